import { closeSync, openSync, writeSync } from 'node:fs';
import { GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GgufType } from './format.js';

/** A metadata entry: scalars, or an array of one element type. */
export type GgufEntry =
  | { key: string; type: GgufType.U32 | GgufType.I32 | GgufType.F32 | GgufType.BOOL | GgufType.STRING; value: number | string | boolean }
  | { key: string; type: GgufType.ARRAY; elem: GgufType.STRING | GgufType.F32 | GgufType.I32; value: (string | number)[] };

export interface GgufTensorOut {
  name: string;
  /** ne[0] first (a matrix: [cols, rows]). */
  dims: number[];
  ggmlType: number;
  data: Uint8Array;
}

class Out {
  private parts: Buffer[] = [];
  size = 0;
  push(b: Buffer): void {
    this.parts.push(b);
    this.size += b.length;
  }
  private num(n: number, write: (b: Buffer) => void): void {
    const b = Buffer.alloc(n);
    write(b);
    this.push(b);
  }
  u32 = (v: number) => this.num(4, (b) => b.writeUInt32LE(v));
  i32 = (v: number) => this.num(4, (b) => b.writeInt32LE(v));
  u64 = (v: number) => this.num(8, (b) => b.writeBigUInt64LE(BigInt(v)));
  f32 = (v: number) => this.num(4, (b) => b.writeFloatLE(v));
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.push(b);
  }
  concat = () => Buffer.concat(this.parts);
}

function scalar(o: Out, type: GgufType, v: string | number | boolean): void {
  if (type === GgufType.U32) o.u32(v as number);
  else if (type === GgufType.I32) o.i32(v as number);
  else if (type === GgufType.F32) o.f32(v as number);
  else if (type === GgufType.BOOL) o.push(Buffer.from([v ? 1 : 0]));
  else o.str(v as string);
}

/** Writes a GGUF v3 file: `general.alignment` is 32 unless the entries set it. */
export function writeGgufFile(path: string, entries: GgufEntry[], tensors: GgufTensorOut[]): void {
  const alignment = Number(entries.find((e) => e.key === 'general.alignment')?.value ?? GGUF_DEFAULT_ALIGNMENT);
  const head = new Out();
  head.u32(GGUF_MAGIC);
  head.u32(3);
  head.u64(tensors.length);
  head.u64(entries.length);
  for (const e of entries) {
    head.str(e.key);
    head.u32(e.type);
    if (e.type === GgufType.ARRAY) {
      head.u32(e.elem);
      head.u64(e.value.length);
      for (const v of e.value) scalar(head, e.elem, v);
    } else scalar(head, e.type, e.value);
  }
  let offset = 0;
  for (const t of tensors) {
    head.str(t.name);
    head.u32(t.dims.length);
    for (const d of t.dims) head.u64(d);
    head.u32(t.ggmlType);
    head.u64(offset);
    offset += Math.ceil(t.data.length / alignment) * alignment;
  }
  const headerBuf = head.concat();
  const pad = (n: number) => Buffer.alloc((alignment - (n % alignment)) % alignment);
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, headerBuf);
    writeSync(fd, pad(headerBuf.length));
    for (const t of tensors) {
      writeSync(fd, t.data);
      writeSync(fd, pad(t.data.length));
    }
  } finally {
    closeSync(fd);
  }
}
