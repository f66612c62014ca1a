"use strict";
/*
 * A minimal WebSocket client for Node (RFC 6455: unfragmented text frames, close, ping) with
 * the part of the browser API jobstate-client.js uses: `new WebSocket(url)`, `readyState`,
 * `send(text)`, `close(code, reason)` and the `onopen` / `onmessage` / `onerror` / `onclose`
 * handlers. Node 20 has no global WebSocket; a Node user passes the `ws` package's class as the
 * client's `WebSocket` option, and this class stands in for it so the tests download nothing.
 */
const crypto = require("node:crypto");
const http = require("node:http");

const ACCEPT_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const OP = { text: 0x1, close: 0x8, ping: 0x9, pong: 0xa };

class MinimalWebSocket {
  constructor(url) {
    const target = new URL(url); // throws on a bad URL, as the browser's constructor does
    if (target.protocol !== "ws:") throw new SyntaxError("only ws: URLs: " + url);
    target.protocol = "http:";
    this.url = url;
    this.readyState = 0;
    this.onopen = this.onmessage = this.onerror = this.onclose = null;
    this._buffer = Buffer.alloc(0);
    this._closeCode = 1006; // what onclose reports unless the server sent a close frame
    this._socket = null;
    MinimalWebSocket.created += 1;

    const key = crypto.randomBytes(16).toString("base64");
    const expected = crypto.createHash("sha1").update(key + ACCEPT_GUID).digest("base64");
    this._request = http.get(target, {
      headers: {
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
      },
    });
    this._request.on("upgrade", (response, socket, head) => {
      this._socket = socket;
      socket.on("data", (chunk) => this._receive(chunk));
      socket.on("close", () => this._closed());
      socket.on("error", () => this._emit("onerror", { type: "error" }));
      if (response.headers["sec-websocket-accept"] !== expected) {
        socket.destroy();
        return;
      }
      this.readyState = 1;
      this._emit("onopen", { type: "open" });
      if (head.length) this._receive(head);
    });
    this._request.on("response", (response) => {
      response.resume(); // refused with an HTTP answer (e.g. 403): the handshake failed
      this._fail();
    });
    this._request.on("error", () => this._fail());
  }

  send(text) {
    if (this.readyState !== 1) throw new Error("InvalidStateError: the socket is not open");
    this._write(OP.text, Buffer.from(String(text), "utf8"));
  }

  close(code, reason) {
    if (this.readyState >= 2) return;
    if (this.readyState === 0) {
      this._request.destroy();
      return;
    }
    this.readyState = 2;
    const why = Buffer.from(reason || "", "utf8");
    const payload = Buffer.alloc(2 + why.length);
    payload.writeUInt16BE(code || 1000, 0);
    why.copy(payload, 2);
    this._write(OP.close, payload);
  }

  _emit(name, event) {
    if (typeof this[name] === "function") this[name](event);
  }

  _fail() {
    if (this.readyState === 3) return;
    this._emit("onerror", { type: "error" });
    this._closed();
  }

  _closed() {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this._emit("onclose", { type: "close", code: this._closeCode });
  }

  // Client frames are always masked (RFC 6455 section 5.3).
  _write(opcode, payload) {
    const mask = crypto.randomBytes(4);
    let header;
    if (payload.length < 126) {
      header = Buffer.from([0x80 | opcode, 0x80 | payload.length]);
    } else if (payload.length < 65536) {
      header = Buffer.alloc(4);
      header.writeUInt16BE(payload.length, 2);
      header[0] = 0x80 | opcode;
      header[1] = 0x80 | 126;
    } else {
      header = Buffer.alloc(10);
      header.writeBigUInt64BE(BigInt(payload.length), 2);
      header[0] = 0x80 | opcode;
      header[1] = 0x80 | 127;
    }
    const masked = Buffer.alloc(payload.length);
    for (let i = 0; i < payload.length; i++) masked[i] = payload[i] ^ mask[i % 4];
    this._socket.write(Buffer.concat([header, mask, masked]));
  }

  _receive(chunk) {
    this._buffer = Buffer.concat([this._buffer, chunk]);
    for (;;) {
      const frame = this._nextFrame();
      if (frame === null) return;
      this._handle(frame.opcode, frame.payload);
    }
  }

  // One complete frame off the front of the buffer, or null while it is incomplete.
  _nextFrame() {
    const buf = this._buffer;
    if (buf.length < 2) return null;
    let length = buf[1] & 0x7f;
    let offset = 2;
    if (length === 126) {
      if (buf.length < 4) return null;
      length = buf.readUInt16BE(2);
      offset = 4;
    } else if (length === 127) {
      if (buf.length < 10) return null;
      length = Number(buf.readBigUInt64BE(2));
      offset = 10;
    }
    if (buf.length < offset + length) return null;
    this._buffer = buf.subarray(offset + length);
    return { opcode: buf[0] & 0x0f, payload: buf.subarray(offset, offset + length) };
  }

  _handle(opcode, payload) {
    if (opcode === OP.text) {
      if (this.readyState === 1) this._emit("onmessage", { type: "message", data: payload.toString("utf8") });
    } else if (opcode === OP.ping) {
      if (this.readyState === 1) this._write(OP.pong, payload);
    } else if (opcode === OP.close) {
      this._closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      if (this.readyState === 1) {
        this.readyState = 2;
        this._write(OP.close, payload.subarray(0, 2));
      }
      this._socket.end();
    }
  }
}

MinimalWebSocket.created = 0;

module.exports = MinimalWebSocket;
