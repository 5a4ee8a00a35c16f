// Benchmarks use the public API only (DESIGN.md: layers).
export { Kvm, Machine, SyncMachine, setupRealMode, GuestMemory } from '../../src';
export { ExitReason } from '../../src/kvm/constants';
