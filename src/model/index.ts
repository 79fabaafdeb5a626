export * from './identity.js';
export * from './types.js';
export * from './state.js';
