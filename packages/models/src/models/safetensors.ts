import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { ModelLoadError } from '../errors.js';
import type { FloatDType } from './spec.js';

/** One tensor's place in a safetensors file. */
export interface SafetensorsEntry {
  file: string;
  dtype: FloatDType;
  shape: number[];
  /** Absolute byte offset of the data in `file`. */
  offset: number;
  bytes: number;
}

const DTYPES: Record<string, FloatDType> = { F32: 'f32', BF16: 'bf16', F16: 'f16' };
const MAX_HEADER = 100 * 1024 * 1024;

/**
 * Reads a safetensors header (8-byte little-endian length, then JSON) and checks every entry
 * lies inside the file. The data itself is memory-mapped later by the engine.
 */
export function readSafetensorsHeader(file: string): Map<string, SafetensorsEntry> {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw new ModelLoadError(`${file}: cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    const size = fstatSync(fd).size;
    if (size < 8) throw new ModelLoadError(`${file}: truncated: ${size} bytes, no safetensors header`);
    const lenBuf = Buffer.alloc(8);
    readSync(fd, lenBuf, 0, 8, 0);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen > MAX_HEADER || headerLen > size - 8) {
      throw new ModelLoadError(`${file}: truncated or not safetensors: header length ${headerLen} exceeds the file (${size} bytes)`);
    }
    const headerBuf = Buffer.alloc(headerLen);
    readSync(fd, headerBuf, 0, headerLen, 8);
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(headerBuf.toString('utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new ModelLoadError(`${file}: safetensors header is not valid JSON (${(e as Error).message})`);
    }
    const dataStart = 8 + headerLen;
    const out = new Map<string, SafetensorsEntry>();
    for (const [name, raw] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      const info = raw as { dtype?: string; shape?: number[]; data_offsets?: [number, number] };
      const dtype = DTYPES[info.dtype ?? ''];
      if (!dtype) throw new ModelLoadError(`${file}: tensor ${name} has unsupported dtype ${info.dtype} (supported: F32, BF16, F16)`);
      const [b, e] = info.data_offsets ?? [0, -1];
      const shape = info.shape ?? [];
      const elems = shape.reduce((a, d) => a * d, 1);
      const bytes = elems * (dtype === 'f32' ? 4 : 2);
      if (e - b !== bytes)
        throw new ModelLoadError(`${file}: tensor ${name}: data_offsets [${b}, ${e}] do not match shape [${shape}] of ${info.dtype}`);
      if (dataStart + e > size) {
        throw new ModelLoadError(`${file}: truncated: tensor ${name} ends at byte ${dataStart + e} but the file has ${size}`);
      }
      out.set(name, { file, dtype, shape, offset: dataStart + b, bytes });
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

/** Writes a safetensors file (used by tests and the benchmark to make real model files). */
export function encodeSafetensors(tensors: { name: string; dtype: FloatDType; shape: number[]; data: Uint8Array }[]): Buffer {
  const header: Record<string, unknown> = {};
  let pos = 0;
  for (const t of tensors) {
    const dtype = { f32: 'F32', bf16: 'BF16', f16: 'F16' }[t.dtype];
    header[t.name] = { dtype, shape: t.shape, data_offsets: [pos, pos + t.data.byteLength] };
    pos += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([len, Buffer.from(json), ...tensors.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))]);
}
