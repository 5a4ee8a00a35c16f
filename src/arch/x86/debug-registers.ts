// The vCPU's hardware breakpoints and single-step, shared by everyone in the
// VMM who needs them.
//
// KVM_SET_GUEST_DEBUG (KVM API doc, 4.59) takes one state per vCPU: control
// bits and the debug registers DR0-DR3/DR7 KVM loads while the guest runs.
// Two parts of tskvm use it: the SYSCALL fix-up (syscall-entry.ts: one
// breakpoint on the guest's page-fault handler, and single-steps past it)
// and the gdb stub (debug-target.ts: up to four breakpoints, single-step).
// Each owner states what it wants here; this class merges the wishes into the
// one ioctl and says whose breakpoint a KVM_EXIT_DEBUG reports.
//
// Only instruction breakpoints: measured on our nested KVM, guest kernel and
// real-mode code runs in KVM's instruction emulator, which checks DR7
// instruction breakpoints before each instruction but never data breakpoints
// (a write watchpoint on a stack slot the guest pushes to did not fire).
import type { Vcpu } from '../../kvm/vcpu';
import { GuestDebug as GuestDebugBits } from '../../kvm/constants';

/** Four address registers, DR0-DR3 (SDM Vol. 3B, 17.2.1). */
export const DEBUG_ADDRESS_REGISTERS = 4;

/**
 * DR6 status bits (SDM Vol. 3B, 17.2.3): B0-B3 (bits 0-3) say which of
 * DR0-DR3 matched; BS (bit 14) says the exception is a single-step trap.
 * KVM reports DR6 in kvm_run.debug.arch.dr6 on KVM_EXIT_DEBUG.
 */
export const DR6_BREAKPOINT_MASK = 0xfn;
export const DR6_BS = 1n << 14n;

/**
 * DR7 for instruction breakpoints (SDM Vol. 3B, 17.2.4): Ln (bit 2n) enables
 * DRn locally; R/Wn (bits 16+4n, 17+4n) = 00 means "break on instruction
 * execution", and then LENn (bits 18+4n, 19+4n) must be 00. So only the
 * enable bits are set.
 */
function dr7EnableExecute(slot: number): bigint {
  return 1n << BigInt(2 * slot);
}

interface Owner {
  /** Slots (indices into DR0-DR3) this owner may use beyond those it holds. */
  reserved: number;
  singleStep: boolean;
}

export class GuestDebugRegisters {
  /** For each of DR0-DR3: who holds it and the linear address it watches. */
  private readonly slots: ({ owner: string; address: bigint } | undefined)[] = new Array(DEBUG_ADDRESS_REGISTERS).fill(undefined);
  private readonly owners = new Map<string, Owner>();

  constructor(private readonly vcpu: Vcpu) {}

  /**
   * Keeps `count` debug registers for `owner` even while it uses none, so
   * another owner cannot take them all (the SYSCALL fix-up must be able to
   * arm its breakpoint whenever the guest loads an IDT).
   */
  reserve(owner: string, count: number): void {
    this.owner(owner).reserved = count;
  }

  /** How many more breakpoints `owner` could have beyond those it holds. */
  available(owner: string): number {
    return this.freeFor(owner, this.slots);
  }

  /** Empty slots in `slots`, less those other owners have reserved and not used yet. */
  private freeFor(owner: string, slots: readonly ({ owner: string } | undefined)[]): number {
    let reservedByOthers = 0;
    for (const [name, o] of this.owners) {
      if (name !== owner) reservedByOthers += Math.max(0, o.reserved - slots.filter((s) => s?.owner === name).length);
    }
    return slots.filter((s) => s === undefined).length - reservedByOthers;
  }

  /** The linear addresses `owner` has breakpoints on. */
  breakpointsOf(owner: string): bigint[] {
    return this.slots.filter((s) => s?.owner === owner).map((s) => s!.address);
  }

  /**
   * Gives `owner` exactly these instruction breakpoints (linear addresses)
   * and/or turns its single-stepping on or off, then loads the merged state
   * into the vCPU. Returns false, changing nothing, if the breakpoints do
   * not fit in the debug registers left to this owner.
   */
  update(owner: string, change: { breakpoints?: readonly bigint[]; singleStep?: boolean }): boolean {
    const state = this.owner(owner);
    if (change.breakpoints) {
      const wanted = [...new Set(change.breakpoints.map((a) => BigInt.asUintN(64, a)))];
      // Keep the slots of breakpoints that stay (no DR moves under a running guest), free the others.
      const next = this.slots.map((s) => (s?.owner === owner && !wanted.includes(s.address) ? undefined : s));
      const missing = wanted.filter((a) => !next.some((s) => s?.owner === owner && s.address === a));
      if (missing.length > this.freeFor(owner, next)) return false;
      for (const address of missing) next[next.indexOf(undefined)] = { owner, address };
      next.forEach((s, i) => (this.slots[i] = s));
    }
    if (change.singleStep !== undefined) state.singleStep = change.singleStep;
    this.apply();
    return true;
  }

  /** Owners whose breakpoint a KVM_EXIT_DEBUG with this DR6 reports. */
  ownersHit(dr6: bigint): string[] {
    const hit: string[] = [];
    this.slots.forEach((s, i) => {
      if (s && (dr6 & DR6_BREAKPOINT_MASK & (1n << BigInt(i))) !== 0n && !hit.includes(s.owner)) hit.push(s.owner);
    });
    return hit;
  }

  private owner(name: string): Owner {
    let owner = this.owners.get(name);
    if (!owner) {
      owner = { reserved: 0, singleStep: false };
      this.owners.set(name, owner);
    }
    return owner;
  }

  /** KVM_SET_GUEST_DEBUG with the union of every owner's wishes; control 0 when nobody wants anything. */
  private apply(): void {
    let dr7 = 0n;
    this.slots.forEach((s, i) => {
      if (s) dr7 |= dr7EnableExecute(i);
    });
    const singleStep = [...this.owners.values()].some((o) => o.singleStep);
    let control = 0;
    if (dr7 !== 0n) control |= GuestDebugBits.ENABLE | GuestDebugBits.USE_HW_BP;
    if (singleStep) control |= GuestDebugBits.ENABLE | GuestDebugBits.SINGLESTEP;
    // kvm_guest_debug_arch.debugreg[8] is indexed by register number: DR0-DR3, (DR4, DR5 unused), DR6, DR7.
    const debugreg = [...this.slots.map((s) => s?.address ?? 0n), 0n, 0n, 0n, dr7];
    this.vcpu.setGuestDebug({ control, debugreg });
  }
}
