// Preloaded with `node --require` to run a program as if pg were not installed: resolving the
// package fails the way a missing package does (MODULE_NOT_FOUND).
const Module = require('node:module');
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  if (request === 'pg' || request.startsWith('pg/')) {
    const error = new Error(`Cannot find module '${request}'`);
    error.code = 'MODULE_NOT_FOUND';
    throw error;
  }
  return resolve.call(this, request, ...rest);
};
