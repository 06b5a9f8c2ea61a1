// Rampart challenge: finds a nonce such that SHA-256(puzzle ":" nonce) starts with
// `bits` zero bits, then sends the answer and lets the original request continue.
// No third party, no visual puzzle; the page's <noscript> part covers browsers without
// JavaScript.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("rampart-challenge").textContent);
  var status = document.getElementById("rampart-status");
  var bar = document.getElementById("rampart-progress");
  var K = new Int32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
  ]);
  var W = new Int32Array(64);

  // One SHA-256 compression of the 16 words in W[0..16] into state H.
  function compress(H) {
    var i, t1, t2, x, y;
    for (i = 16; i < 64; i++) {
      x = W[i - 15];
      y = W[i - 2];
      W[i] = (((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) +
        W[i - 7] + (((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) +
        W[i - 16] | 0;
    }
    var a = H[0], b = H[1], c = H[2], d = H[3], e = H[4], f = H[5], g = H[6], h = H[7];
    for (i = 0; i < 64; i++) {
      t1 = h + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) +
        ((e & f) ^ (~e & g)) + K[i] + W[i] | 0;
      t2 = (((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) +
        ((a & b) ^ (a & c) ^ (b & c)) | 0;
      h = g; g = f; f = e; e = d + t1 | 0; d = c; c = b; b = a; a = t1 + t2 | 0;
    }
    H[0] = H[0] + a | 0; H[1] = H[1] + b | 0; H[2] = H[2] + c | 0; H[3] = H[3] + d | 0;
    H[4] = H[4] + e | 0; H[5] = H[5] + f | 0; H[6] = H[6] + g | 0; H[7] = H[7] + h | 0;
  }

  // The puzzle and ":" are ASCII: whole 64-byte blocks are hashed once (the midstate);
  // each nonce then costs one or two compressions.
  var prefix = data.p + ":";
  var mid = new Int32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
  ]);
  var full = prefix.length - (prefix.length % 64);
  var i, j;
  for (i = 0; i < full; i += 64) {
    for (j = 0; j < 16; j++) {
      var o = i + 4 * j;
      W[j] = (prefix.charCodeAt(o) << 24) | (prefix.charCodeAt(o + 1) << 16) |
        (prefix.charCodeAt(o + 2) << 8) | prefix.charCodeAt(o + 3);
    }
    compress(mid);
  }
  var tail = prefix.slice(full);
  var H = new Int32Array(8);

  function leadingZerosOk(bits) {
    if (bits <= 32) return bits === 0 || (H[0] >>> (32 - bits)) === 0;
    return H[0] === 0 && (H[1] >>> (64 - bits)) === 0;
  }

  // Hashes tail + nonce (decimal) with padding, from the midstate: one 64-byte block,
  // or two when the tail, the nonce, 0x80 and the 8-byte length do not fit in one.
  var msg = new Uint8Array(128);
  function attempt(nonce) {
    var s = tail + nonce;
    var n = s.length;
    var blocks = n + 9 > 64 ? 2 : 1;
    msg.fill(0);
    for (var k = 0; k < n; k++) msg[k] = s.charCodeAt(k);
    msg[n] = 0x80;
    // Length in bits, big-endian, in the last 4 bytes (messages here are < 2^29 bytes).
    var bitsLen = (full + n) * 8;
    var end = blocks * 64;
    msg[end - 4] = bitsLen >>> 24;
    msg[end - 3] = (bitsLen >>> 16) & 255;
    msg[end - 2] = (bitsLen >>> 8) & 255;
    msg[end - 1] = bitsLen & 255;
    H.set(mid);
    for (var b = 0; b < end; b += 64) {
      for (var w = 0; w < 16; w++) {
        var o = b + 4 * w;
        W[w] = (msg[o] << 24) | (msg[o + 1] << 16) | (msg[o + 2] << 8) | msg[o + 3];
      }
      compress(H);
    }
    return leadingZerosOk(data.bits);
  }

  function say(text) {
    status.textContent = text;
  }

  function submit(nonce) {
    var url = data.verify + "?p=" + encodeURIComponent(data.p) + "&n=" + nonce;
    if (data.method === "GET" || data.method === "HEAD") {
      location.replace(url);
      return;
    }
    var body = data.body === null ? null : Uint8Array.from(atob(data.body), function (c) {
      return c.charCodeAt(0);
    });
    if (data.form) {
      // A form post: post the same fields again, as a navigation.
      var f = document.createElement("form");
      f.method = "POST";
      f.action = url;
      f.acceptCharset = "UTF-8";
      new URLSearchParams(new TextDecoder().decode(body)).forEach(function (v, k) {
        var input = document.createElement("input");
        input.type = "hidden";
        input.name = k;
        input.value = v;
        f.appendChild(input);
      });
      document.body.appendChild(f);
      f.submit();
      return;
    }
    var init = { method: data.method, credentials: "same-origin" };
    if (body !== null) {
      init.body = body;
      init.headers = { "content-type": data.ct };
    }
    fetch(url, init).then(function (r) {
      return r.text().then(function (t) {
        history.replaceState(null, "", r.url);
        document.open();
        document.write(t);
        document.close();
      });
    }, function () {
      say("The check could not be sent. Reload the page to try again.");
    });
  }

  var expected = Math.pow(2, data.bits);
  var nonce = 0;
  function run() {
    var end = nonce + 20000;
    for (; nonce < end; nonce++) {
      if (attempt(String(nonce))) {
        if (bar) bar.value = 100;
        say("Done. Continuing…");
        submit(String(nonce));
        return;
      }
    }
    if (bar) bar.value = Math.min(99, Math.floor(100 * nonce / (2 * expected)));
    setTimeout(run, 0);
  }
  run();
})();
