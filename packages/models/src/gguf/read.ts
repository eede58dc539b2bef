import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { ModelLoadError } from '../errors.js';
import { GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, type GgufFile, type GgufTensorInfo, GgufType, type GgufValue } from './format.js';

const CHUNK = 1 << 20;

/** Reads the header only, in chunks, from a file that may be many gigabytes. */
class HeaderReader {
  private buf = Buffer.alloc(0);
  private base = 0; // file offset of buf[0]
  pos = 0; // file offset of the next read

  constructor(
    private readonly fd: number,
    private readonly size: number,
    private readonly file: string,
  ) {}

  private need(n: number): number {
    if (this.pos + n > this.size)
      throw new ModelLoadError(`${this.file}: truncated GGUF header (needs byte ${this.pos + n}, the file has ${this.size})`);
    if (this.pos + n > this.base + this.buf.length) {
      const len = Math.min(this.size - this.pos, Math.max(CHUNK, n));
      this.buf = Buffer.alloc(len);
      readSync(this.fd, this.buf, 0, len, this.pos);
      this.base = this.pos;
    }
    const at = this.pos - this.base;
    this.pos += n;
    return at;
  }
  u8 = () => {
    const at = this.need(1);
    return this.buf.readUInt8(at);
  };
  i8 = () => {
    const at = this.need(1);
    return this.buf.readInt8(at);
  };
  u16 = () => {
    const at = this.need(2);
    return this.buf.readUInt16LE(at);
  };
  i16 = () => {
    const at = this.need(2);
    return this.buf.readInt16LE(at);
  };
  u32 = () => {
    const at = this.need(4);
    return this.buf.readUInt32LE(at);
  };
  i32 = () => {
    const at = this.need(4);
    return this.buf.readInt32LE(at);
  };
  f32 = () => {
    const at = this.need(4);
    return this.buf.readFloatLE(at);
  };
  f64 = () => {
    const at = this.need(8);
    return this.buf.readDoubleLE(at);
  };
  u64big = () => {
    const at = this.need(8);
    return this.buf.readBigUInt64LE(at);
  };
  i64big = () => {
    const at = this.need(8);
    return this.buf.readBigInt64LE(at);
  };
  /** A count or offset: refused past 2^53. */
  u64 = (): number => {
    const v = this.u64big();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ModelLoadError(`${this.file}: corrupt GGUF header (a count of ${v})`);
    return Number(v);
  };
  str = (): string => {
    const n = this.u64();
    if (n > this.size) throw new ModelLoadError(`${this.file}: corrupt GGUF header (a string of ${n} bytes)`);
    const at = this.need(n);
    return this.buf.toString('utf8', at, at + n);
  };

  value(type: number): GgufValue {
    switch (type) {
      case GgufType.U8:
        return this.u8();
      case GgufType.I8:
        return this.i8();
      case GgufType.U16:
        return this.u16();
      case GgufType.I16:
        return this.i16();
      case GgufType.U32:
        return this.u32();
      case GgufType.I32:
        return this.i32();
      case GgufType.F32:
        return this.f32();
      case GgufType.F64:
        return this.f64();
      case GgufType.BOOL:
        return this.u8() !== 0;
      case GgufType.STRING:
        return this.str();
      case GgufType.U64: {
        const v = this.u64big();
        return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
      }
      case GgufType.I64: {
        const v = this.i64big();
        return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
      }
      case GgufType.ARRAY: {
        const elem = this.u32();
        const n = this.u64();
        if (n > this.size) throw new ModelLoadError(`${this.file}: corrupt GGUF header (an array of ${n} values)`);
        const out: GgufValue[] = new Array(n);
        for (let i = 0; i < n; i++) out[i] = this.value(elem);
        return out;
      }
      default:
        throw new ModelLoadError(`${this.file}: corrupt GGUF header (unknown value type ${type})`);
    }
  }
}

/** The metadata and tensor descriptions of a GGUF file (v2 or v3), with absolute data offsets. */
export function readGguf(path: string): GgufFile {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new ModelLoadError(`${path}: cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    const size = fstatSync(fd).size;
    const r = new HeaderReader(fd, size, path);
    if (size < 24 || r.u32() !== GGUF_MAGIC) throw new ModelLoadError(`${path}: not a GGUF file (no GGUF magic)`);
    const version = r.u32();
    if (version !== 2 && version !== 3) throw new ModelLoadError(`${path}: GGUF version ${version} is not supported (2 and 3 are)`);
    const nTensors = r.u64();
    const nKv = r.u64();
    const metadata = new Map<string, GgufValue>();
    for (let i = 0; i < nKv; i++) {
      const key = r.str();
      metadata.set(key, r.value(r.u32()));
    }
    const infos: Omit<GgufTensorInfo, 'offset'>[] = [];
    const rel: number[] = [];
    for (let i = 0; i < nTensors; i++) {
      const name = r.str();
      const nDims = r.u32();
      if (nDims > 4) throw new ModelLoadError(`${path}: corrupt GGUF header (tensor ${name} has ${nDims} dimensions)`);
      const dims = Array.from({ length: nDims }, () => r.u64());
      const ggmlType = r.u32();
      rel.push(r.u64());
      infos.push({ name, dims, ggmlType });
    }
    const alignment = Number(metadata.get('general.alignment') ?? GGUF_DEFAULT_ALIGNMENT);
    const dataStart = Math.ceil(r.pos / alignment) * alignment;
    const tensors = infos.map((t, i) => ({ ...t, offset: dataStart + (rel[i] as number) }));
    return { version, metadata, tensors };
  } finally {
    closeSync(fd);
  }
}
