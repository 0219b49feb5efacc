/** HTTP/2 frame layout and codes (RFC 9113 §4, §6, §7). */

export const PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
export const FRAME_HEADER_LEN = 9;
/** The frame size every peer must accept; we never announce more. */
export const DEFAULT_MAX_FRAME_SIZE = 16_384;
export const DEFAULT_WINDOW = 65_535;
export const MAX_WINDOW = 0x7fff_ffff;

export const FrameType = {
  DATA: 0,
  HEADERS: 1,
  PRIORITY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PUSH_PROMISE: 5,
  PING: 6,
  GOAWAY: 7,
  WINDOW_UPDATE: 8,
  CONTINUATION: 9,
} as const;

export const Flag = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

export const Setting = {
  HEADER_TABLE_SIZE: 1,
  ENABLE_PUSH: 2,
  MAX_CONCURRENT_STREAMS: 3,
  INITIAL_WINDOW_SIZE: 4,
  MAX_FRAME_SIZE: 5,
  MAX_HEADER_LIST_SIZE: 6,
} as const;

export const ErrorCode = {
  NO_ERROR: 0,
  PROTOCOL_ERROR: 1,
  INTERNAL_ERROR: 2,
  FLOW_CONTROL_ERROR: 3,
  STREAM_CLOSED: 5,
  FRAME_SIZE_ERROR: 6,
  REFUSED_STREAM: 7,
  CANCEL: 8,
  COMPRESSION_ERROR: 9,
  ENHANCE_YOUR_CALM: 11,
} as const;

/** A frame's 9-byte header. */
export function frameHeader(length: number, type: number, flags: number, streamId: number) {
  const h = new Uint8Array(FRAME_HEADER_LEN);
  h[0] = length >>> 16;
  h[1] = (length >>> 8) & 0xff;
  h[2] = length & 0xff;
  h[3] = type;
  h[4] = flags;
  h[5] = (streamId >>> 24) & 0x7f;
  h[6] = (streamId >>> 16) & 0xff;
  h[7] = (streamId >>> 8) & 0xff;
  h[8] = streamId & 0xff;
  return h;
}

/** A whole frame with a small payload, in one buffer. */
export function frame(type: number, flags: number, streamId: number, payload?: Uint8Array) {
  const len = payload?.length ?? 0;
  const out = new Uint8Array(FRAME_HEADER_LEN + len);
  out.set(frameHeader(len, type, flags, streamId), 0);
  if (payload) out.set(payload, FRAME_HEADER_LEN);
  return out;
}

export function u32(...values: number[]): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => view.setUint32(i * 4, v >>> 0));
  return out;
}

export function settingsFrame(settings: [id: number, value: number][]): Uint8Array {
  const payload = new Uint8Array(settings.length * 6);
  const view = new DataView(payload.buffer);
  settings.forEach(([id, value], i) => {
    view.setUint16(i * 6, id);
    view.setUint32(i * 6 + 2, value);
  });
  return frame(FrameType.SETTINGS, 0, 0, payload);
}

export function windowUpdateFrame(streamId: number, increment: number): Uint8Array {
  return frame(FrameType.WINDOW_UPDATE, 0, streamId, u32(increment));
}

export function rstStreamFrame(streamId: number, code: number): Uint8Array {
  return frame(FrameType.RST_STREAM, 0, streamId, u32(code));
}

export function goAwayFrame(lastStreamId: number, code: number, debug = ""): Uint8Array {
  const text = new TextEncoder().encode(debug.slice(0, 200));
  const payload = new Uint8Array(8 + text.length);
  payload.set(u32(lastStreamId & MAX_WINDOW, code), 0);
  payload.set(text, 8);
  return frame(FrameType.GOAWAY, 0, 0, payload);
}
