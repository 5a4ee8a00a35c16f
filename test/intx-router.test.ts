// IntxRouter: shared (wired-OR) PCI INTx lines in front of KVM_IRQ_LINE.
import { IntxRouter } from '../src/pci/intx-router';

test('a shared GSI stays asserted while any device asserts it; only changes reach the controller', () => {
  const calls: [number, boolean][] = [];
  const router = new IntxRouter((gsi, level) => calls.push([gsi, level]));
  const a = router.line(17);
  const b = router.line(17);
  const c = router.line(18);
  a(true);
  b(true); // already high: no call
  a(false); // b still asserts
  expect(router.level(17)).toBe(true);
  b(false);
  c(true);
  a(false); // already low for a: no call
  expect(calls).toEqual([
    [17, true],
    [17, false],
    [18, true],
  ]);
  expect(router.level(17)).toBe(false);
  expect(router.level(18)).toBe(true);
});

test('a device repeating its level does not toggle the line', () => {
  const calls: boolean[] = [];
  const router = new IntxRouter((_gsi, level) => calls.push(level));
  const a = router.line(16);
  a(true);
  a(true);
  a(false);
  a(false);
  expect(calls).toEqual([true, false]);
});
