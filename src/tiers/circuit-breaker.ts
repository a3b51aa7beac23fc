/**
 * Stops hammering a tier that is down (contract 6: degrade, never hang). After `threshold`
 * consecutive failures the circuit opens: calls fail at once, without touching the network,
 * and reads go to the database. After a cooldown one probe call is let through; success closes
 * the circuit, failure reopens it with a doubled cooldown (capped), so service resumes within
 * about one cooldown of the tier coming back.
 */
import type { Clock } from '../clock.js';

export interface CircuitBreakerOptions {
  /** Consecutive failures that open the circuit. Default 5. */
  threshold?: number;
  /** First wait before a probe, ms. Default 1000. */
  cooldownMs?: number;
  /** Longest wait before a probe, ms. Default 10000. */
  maxCooldownMs?: number;
}

export type CircuitState = 'closed' | 'open' | 'half-open';

export class CircuitBreaker {
  private failures = 0;
  private cooldown: number;
  private openUntil = 0;
  private probing = false;
  state: CircuitState = 'closed';

  constructor(
    private readonly clock: Clock,
    private readonly options: Required<CircuitBreakerOptions>,
    private readonly onChange: (state: CircuitState) => void = () => undefined,
  ) {
    this.cooldown = options.cooldownMs;
  }

  /** Whether a call may go to the tier now. */
  allow(): boolean {
    if (this.state === 'closed') return true;
    if (this.state === 'open' && this.clock.now() >= this.openUntil) {
      this.change('half-open');
      this.probing = false;
    }
    if (this.state === 'half-open' && !this.probing) {
      this.probing = true;
      return true;
    }
    return false;
  }

  success(): void {
    this.failures = 0;
    this.probing = false;
    this.cooldown = this.options.cooldownMs;
    if (this.state !== 'closed') this.change('closed');
  }

  failure(): void {
    this.failures++;
    if (this.state === 'half-open') {
      this.cooldown = Math.min(this.cooldown * 2, this.options.maxCooldownMs);
      this.open();
    } else if (this.state === 'closed' && this.failures >= this.options.threshold) {
      this.open();
    }
  }

  private open(): void {
    this.probing = false;
    this.openUntil = this.clock.now() + this.cooldown;
    this.change('open');
  }

  private change(state: CircuitState): void {
    this.state = state;
    this.onChange(state);
  }
}

export function breakerOptions(options: CircuitBreakerOptions = {}): Required<CircuitBreakerOptions> {
  return { threshold: options.threshold ?? 5, cooldownMs: options.cooldownMs ?? 1_000, maxCooldownMs: options.maxCooldownMs ?? 10_000 };
}
