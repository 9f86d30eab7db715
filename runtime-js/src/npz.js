/**
 * numpy's `.npz` (a zip of `.npy` arrays), the container of edgeseq snapshots: enough of
 * it to read what `np.savez` writes (stored entries, zip64 extras) and to write archives
 * `np.load` reads. Never pickle: object arrays are refused.
 */

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** The zip CRC-32 of `bytes`. */
export function crc32(bytes) {
  let c = 0xffffffff;
  for (let k = 0; k < bytes.length; k++) c = CRC_TABLE[(c ^ bytes[k]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// npy descr <-> dtype name (little-endian, as numpy writes on every common machine)
const DESCR = {
  "<f4": "float32",
  "<f8": "float64",
  "<f2": "float16",
  "<i8": "int64",
  "<i4": "int32",
  "|u1": "uint8",
  "|i1": "int8",
  "|b1": "bool",
};
const ARRAYS = {
  float32: Float32Array,
  float64: Float64Array,
  float16: Uint16Array, // raw half-precision bits
  int64: BigInt64Array,
  int32: Int32Array,
  uint8: Uint8Array,
  int8: Int8Array,
  bool: Uint8Array,
};
const DTYPE_DESCR = Object.fromEntries(Object.entries(DESCR).map(([d, n]) => [n, d]));

const ascii = new TextDecoder("latin1");
const enc = new TextEncoder();

/** Encode `{dtype, dims, data}` as `.npy` bytes (format 1.0, C order). */
export function encodeNpy({ dtype, dims, data }) {
  const descr = DTYPE_DESCR[dtype];
  if (!descr) throw new TypeError(`cannot write dtype ${dtype} to .npy`);
  const shape = dims.length === 1 ? `(${dims[0]},)` : `(${dims.join(", ")})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  const total = 10 + header.length + 1;
  header += " ".repeat((64 - (total % 64)) % 64) + "\n";
  const out = new Uint8Array(10 + header.length + data.byteLength);
  out.set([0x93, ...enc.encode("NUMPY"), 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(enc.encode(header), 10);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 10 + header.length);
  return out;
}

/** Decode `.npy` bytes to `{dtype, dims, data}`; throws `Error` on anything unexpected. */
export function decodeNpy(bytes) {
  if (bytes.length < 10 || bytes[0] !== 0x93 || ascii.decode(bytes.subarray(1, 6)) !== "NUMPY") {
    throw new Error("not an .npy array (bad magic)");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6];
  const hlen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = ascii.decode(bytes.subarray(start, start + hlen));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeText === undefined) throw new Error(`unreadable .npy header ${header.trim()}`);
  const dtype = DESCR[descr];
  if (!dtype) throw new Error(`unsupported .npy dtype ${descr} (object or big-endian arrays are refused)`);
  if (fortran === "True") throw new Error("Fortran-ordered .npy arrays are not supported");
  const dims = shapeText
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map(Number);
  const Arr = ARRAYS[dtype];
  const count = dims.reduce((a, b) => a * b, 1);
  const raw = bytes.subarray(start + hlen, start + hlen + count * Arr.BYTES_PER_ELEMENT);
  if (raw.length !== count * Arr.BYTES_PER_ELEMENT) throw new Error(".npy data is truncated");
  const body = new Uint8Array(raw.length); // a fresh, aligned copy (Buffers share pools)
  body.set(raw);
  return { dtype, dims, data: new Arr(body.buffer, 0, count) };
}

/** Write a zip of stored (uncompressed) entries: `[[name, bytes], ...]`. */
export function writeZip(entries) {
  const parts = [];
  const central = [];
  let offset = 0;
  for (const [name, data] of entries) {
    const fname = enc.encode(name);
    const crc = crc32(data);
    const local = new Uint8Array(30 + fname.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true); // version needed
    lv.setUint16(8, 0, true); // stored
    lv.setUint16(12, 0x21, true); // 1980-01-01: fixed, so equal archives are equal bytes
    lv.setUint32(14, crc, true);
    lv.setUint32(18, data.length, true);
    lv.setUint32(22, data.length, true);
    lv.setUint16(26, fname.length, true);
    local.set(fname, 30);
    const cd = new Uint8Array(46 + fname.length);
    const cv = new DataView(cd.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 20, true);
    cv.setUint16(6, 20, true);
    cv.setUint16(14, 0x21, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, data.length, true);
    cv.setUint32(24, data.length, true);
    cv.setUint16(28, fname.length, true);
    cv.setUint32(42, offset, true);
    cd.set(fname, 46);
    parts.push(local, data);
    central.push(cd);
    offset += local.length + data.length;
  }
  const cdSize = central.reduce((n, c) => n + c.length, 0);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, entries.length, true);
  ev.setUint16(10, entries.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  const all = [...parts, ...central, end];
  const out = new Uint8Array(all.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of all) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function zip64Extra(extra, want) {
  // the zip64 extended-information field (id 1) holds, in order, only the values whose
  // 32-bit fields are 0xFFFFFFFF: uncompressed size, compressed size, local header offset
  const v = new DataView(extra.buffer, extra.byteOffset, extra.byteLength);
  for (let p = 0; p + 4 <= extra.length; ) {
    const id = v.getUint16(p, true);
    const n = v.getUint16(p + 2, true);
    if (id === 1) {
      const vals = [];
      for (let q = p + 4; q + 8 <= p + 4 + n; q += 8) vals.push(Number(v.getBigUint64(q, true)));
      return want.map(() => vals.shift());
    }
    p += 4 + n;
  }
  throw new Error("zip64 sizes missing");
}

/** Read a zip's stored entries: `Map(name -> bytes)`, CRCs checked. */
export function readZip(bytes) {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let eocd = -1;
  for (let p = bytes.length - 22; p >= Math.max(0, bytes.length - 22 - 65535); p--) {
    if (v.getUint32(p, true) === 0x06054b50) {
      eocd = p;
      break;
    }
  }
  if (eocd < 0) throw new Error("not a zip archive (no end of central directory)");
  let count = v.getUint16(eocd + 10, true);
  let cdOffset = v.getUint32(eocd + 16, true);
  if (cdOffset === 0xffffffff || count === 0xffff) {
    const loc = eocd - 20; // zip64 end-of-central-directory locator
    if (loc < 0 || v.getUint32(loc, true) !== 0x07064b50) throw new Error("zip64 locator missing");
    const rec = Number(v.getBigUint64(loc + 8, true));
    count = Number(v.getBigUint64(rec + 32, true));
    cdOffset = Number(v.getBigUint64(rec + 48, true));
  }
  const out = new Map();
  let p = cdOffset;
  for (let k = 0; k < count; k++) {
    if (v.getUint32(p, true) !== 0x02014b50) throw new Error("bad central directory entry");
    const method = v.getUint16(p + 10, true);
    const crc = v.getUint32(p + 16, true);
    let csize = v.getUint32(p + 20, true);
    let usize = v.getUint32(p + 24, true);
    const nlen = v.getUint16(p + 28, true);
    const xlen = v.getUint16(p + 30, true);
    const clen = v.getUint16(p + 32, true);
    let local = v.getUint32(p + 42, true);
    const name = new TextDecoder().decode(bytes.subarray(p + 46, p + 46 + nlen));
    const extra = bytes.subarray(p + 46 + nlen, p + 46 + nlen + xlen);
    const big = [usize, csize, local].map((x) => x === 0xffffffff);
    if (big.some(Boolean)) {
      const vals = zip64Extra(extra, big.filter(Boolean));
      if (big[0]) usize = vals.shift();
      if (big[1]) csize = vals.shift();
      if (big[2]) local = vals.shift();
    }
    if (method !== 0) throw new Error(`entry ${name} is compressed (method ${method}); expected np.savez's stored entries`);
    if (v.getUint32(local, true) !== 0x04034b50) throw new Error(`bad local header for ${name}`);
    const start = local + 30 + v.getUint16(local + 26, true) + v.getUint16(local + 28, true);
    if (start + csize > bytes.length) throw new Error(`entry ${name} is truncated`);
    const data = bytes.subarray(start, start + csize);
    if (usize !== csize || crc32(data) !== crc) throw new Error(`Bad CRC-32 for file '${name}'`);
    out.set(name, data);
    p += 46 + nlen + xlen + clen;
  }
  return out;
}
