// tskvm's public API.
export { SyncMachine, MachineConfigError } from './vmm/sync-machine';
export type { LoadLinuxOptions } from './vmm/sync-machine';
export type { MachineConfig, MachineEvents } from './vmm/sync-machine';
export { runExitLoop, describeExitForTrace } from './vmm/exit-loop';
export type { ExitLoopContext, VcpuStop, VcpuStopKind, EmulationFailureHandler } from './vmm/exit-loop';
export { buildExitReport, formatExitReport } from './vmm/exit-report';
export type { ExitReport } from './vmm/exit-report';
export { ExitStats, formatCountTable } from './vmm/exit-stats';
export { parseSize, parseAddress } from './vmm/size';

export { Kvm, KVM_API_VERSION } from './kvm/kvm';
export { Vm } from './kvm/vm';
export { Vcpu } from './kvm/vcpu';
export { KvmError } from './kvm/errors';
export * as kvmConstants from './kvm/constants';
export type { Regs } from './kvm/structs/regs';
export type { Sregs, Segment, DescriptorTable } from './kvm/structs/sregs';
export type { VcpuExit, IoExit, MmioExit } from './kvm/structs/run';
export type { CpuidEntry } from './kvm/structs/cpuid';
export type { MsrEntry } from './kvm/structs/msrs';

export { GuestMemory, GuestMemoryError } from './memory/guest-memory';
export { Bus, PioBus, MmioBus, BusError } from './bus/bus';
export type { BusDevice, AccessSize } from './bus/bus';

export { setupMode, setupRealMode, setupProtectedMode, setupLongMode, describeMode } from './arch/x86/modes';
export type { CpuMode, ModeOptions } from './arch/x86/modes';

export { Machine, MachineStartError } from './vmm/machine';
export type { MachineOptions, MachineState, AsyncMachineEvents, BootSpec, MachineStatistics } from './vmm/machine';
export { MachineDebugger, DebuggerError } from './vmm/machine-debugger';
export type { DebugOutcome, DebugStop, DebugStopReason, CpuState, CpuStateChange } from './vmm/machine-debugger';
export { GdbStub } from './gdb/gdb-stub';
export type { GdbStubOptions } from './gdb/gdb-stub';
export { ByteRing } from './vmm/byte-ring';
