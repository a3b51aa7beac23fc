/** What the demo ran on, printed with its figures (latencies mean little without it). */
import { arch, cpus, loadavg, platform, release, totalmem } from 'node:os';

export interface MachineInfo {
  readonly node: string;
  readonly platform: string;
  readonly arch: string;
  readonly osRelease: string;
  readonly cpus: number;
  readonly cpuModel: string;
  readonly memoryMb: number;
  /** 1-minute load average when the demo started (0 where the OS has none). */
  readonly loadAverage: number;
}

export function machineInfo(): MachineInfo {
  const cores = cpus();
  return {
    node: process.version,
    platform: platform(),
    arch: arch(),
    osRelease: release(),
    cpus: cores.length,
    cpuModel: cores[0]?.model.trim() ?? 'unknown',
    memoryMb: Math.round(totalmem() / 2 ** 20),
    loadAverage: Math.round((loadavg()[0] ?? 0) * 100) / 100,
  };
}
