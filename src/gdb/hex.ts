// Hex text as the GDB remote protocol uses it (GDB manual, E.1 "Overview"):
// memory and registers are pairs of hex digits, one pair per byte, in target
// byte order (little-endian on x86); numbers in packets (addresses, lengths,
// register numbers) are plain big-endian hex.

/** Bytes as lower-case hex pairs. */
export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** Hex pairs to bytes; undefined if the text is not an even number of hex digits. */
export function fromHex(text: string): Uint8Array | undefined {
  if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) return undefined;
  return Uint8Array.from(Buffer.from(text, 'hex'));
}

/** A number in a packet ("8011", "ffffffff81000000"); undefined if it is not hex or longer than 64 bits. */
export function parseHexNumber(text: string): bigint | undefined {
  if (!/^[0-9a-fA-F]{1,16}$/.test(text)) return undefined;
  return BigInt('0x' + text);
}

/** `size` bytes of `value`, little-endian. */
export function littleEndian(value: bigint, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let v = BigInt.asUintN(size * 8, value);
  for (let i = 0; i < size; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** The little-endian number in `bytes`. */
export function fromLittleEndian(bytes: Uint8Array): bigint {
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]!);
  return v;
}
