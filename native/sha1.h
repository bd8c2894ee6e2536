/*
 * SHA-1 (FIPS 180-4), for the server-side names of prepared statements: the thread must name a
 * statement exactly as pool/prepared.ts does (tandem_ + hex sha1 of the Parse body after the name),
 * since a server connection passes between the two. Not for anything secret. Included once, by
 * forwarder.c.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static uint32_t sha1_rotl(uint32_t x, int n) {
  return (x << n) | (x >> (32 - n));
}

static void sha1_block(uint32_t h[5], const uint8_t *block) {
  uint32_t w[80];
  for (int i = 0; i < 16; i++) {
    w[i] = ((uint32_t)block[4 * i] << 24) | ((uint32_t)block[4 * i + 1] << 16) | ((uint32_t)block[4 * i + 2] << 8) | block[4 * i + 3];
  }
  for (int i = 16; i < 80; i++) w[i] = sha1_rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
  for (int i = 0; i < 80; i++) {
    uint32_t f, k;
    if (i < 20) {
      f = (b & c) | (~b & d);
      k = 0x5a827999;
    } else if (i < 40) {
      f = b ^ c ^ d;
      k = 0x6ed9eba1;
    } else if (i < 60) {
      f = (b & c) | (b & d) | (c & d);
      k = 0x8f1bbcdc;
    } else {
      f = b ^ c ^ d;
      k = 0xca62c1d6;
    }
    uint32_t t = sha1_rotl(a, 5) + f + e + k + w[i];
    e = d;
    d = c;
    c = sha1_rotl(b, 30);
    b = a;
    a = t;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
}

/* Writes the 40 lower-case hex digits of the digest of bytes[0 .. length) to `hex` (no terminator). */
static void sha1_hex(const uint8_t *bytes, size_t length, char hex[40]) {
  uint32_t h[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
  size_t whole = length & ~(size_t)63;
  for (size_t at = 0; at < whole; at += 64) sha1_block(h, bytes + at);
  uint8_t tail[128] = {0};
  size_t rest = length - whole;
  memcpy(tail, bytes + whole, rest);
  tail[rest] = 0x80;
  size_t tail_len = rest + 9 <= 64 ? 64 : 128;
  uint64_t bits = (uint64_t)length * 8;
  for (int i = 0; i < 8; i++) tail[tail_len - 1 - i] = (uint8_t)(bits >> (8 * i));
  for (size_t at = 0; at < tail_len; at += 64) sha1_block(h, tail + at);
  static const char DIGITS[] = "0123456789abcdef";
  for (int i = 0; i < 20; i++) {
    uint8_t byte = (uint8_t)(h[i / 4] >> (24 - 8 * (i % 4)));
    hex[2 * i] = DIGITS[byte >> 4];
    hex[2 * i + 1] = DIGITS[byte & 15];
  }
}
