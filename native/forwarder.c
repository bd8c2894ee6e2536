/*
 * tandem's native forwarder: the forwarding phase of plain-TCP proxy sessions, off Node's event loop.
 *
 * After authentication the proxy hands a session's two sockets over (their file descriptors, which
 * this module duplicates, and whatever bytes JavaScript had already read but not yet forwarded).
 * From then on one background thread per process moves bytes between them with epoll, doing what
 * src/proxy/session/forwarding.ts does in Node:
 *
 *   - it follows frame boundaries both ways (type byte, int32 length) without copying payloads,
 *     and refuses a client length outside 4 .. 1 GB - 1 as FrameScanner does;
 *   - it counts bytes both ways and the client's Query and Execute messages into a Float64Array
 *     owned by JavaScript, which reads it when someone asks (heartbeats, metrics, /status);
 *   - backpressure: a side is not read while the other side still has unsent bytes, so a session
 *     holds at most one read's worth (CHUNK) per direction, and nothing while idle;
 *   - a retired session gets its error at the client's next message boundary; a terminated one
 *     (shutdown) at once; either way only between two server messages, or the client is cut off;
 *   - every end is reported to JavaScript (a thread-safe function) with its reason, after the
 *     final counters are in place, so logs, metrics and the usage ledger stay correct.
 *
 * Only the thread touches sessions once started. JavaScript talks to it through a command queue
 * (mutex + eventfd); a session's memory is freed by the thread after JavaScript has seen its end,
 * so a command can never name a freed session.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* One read; also the most a direction keeps unsent before its source is no longer read. */
#define CHUNK 65536
/* Reads per direction before other sessions get a turn. */
#define READS_PER_TURN 16
/* How long a side that was sent its last bytes may take to hang up before it is closed (FATAL_LINGER_MS). */
#define LINGER_MS 2000
/* The largest message PostgreSQL accepts at all (MAX_MESSAGE_LENGTH in frames.ts). */
#define MAX_MESSAGE_LENGTH 0x3fffffff
#define MAX_EVENTS 256

#define TYPE_QUERY 0x51     /* 'Q' */
#define TYPE_EXECUTE 0x45   /* 'E' from the client */
#define TYPE_TERMINATE 0x58 /* 'X' */
#define TYPE_ERROR 0x45     /* 'E' from the server */
#define TYPE_PARAMETER_STATUS 0x53 /* 'S' from the server */
/* ParameterStatus bodies longer than this are passed on without being read. */
#define MAX_PARAMETER_BODY 4096

/* Slots of the counters array JavaScript reads (NativeCounter in native.ts). */
enum { BYTES_IN, BYTES_OUT, QUERIES, LAST_QUERY_AT, COUNTERS };

typedef enum {
  END_CLIENT_CLOSED,
  END_SERVER_CLOSED,
  END_CLIENT_PROTOCOL,
  END_SERVER_PROTOCOL,
  END_RETIRED,
  END_TERMINATED,
  END_INTERNAL,
} end_reason;

static const char *const REASON_NAMES[] = {
    "client_closed", "server_closed", "client_protocol", "server_protocol", "retired", "terminated", "internal",
};

/* What becomes of a side when its session ends. */
typedef enum {
  CLOSE_NOW,   /* close at once; unsent bytes are dropped */
  CLOSE_AFTER, /* send what is queued (plus any last bytes), half-close, wait for the peer to hang up */
} close_mode;

/* Frame boundaries in one direction (FrameScanner in frames.ts). */
typedef struct {
  uint32_t remaining;     /* payload bytes of the current message still to come */
  uint32_t header_length; /* a header split across reads, assembled a byte at a time */
  uint8_t header_bytes;
  uint8_t header_type;
  /* A server ParameterStatus being read (rare after login: a SET of a reported setting). */
  char *capture;
  uint32_t captured;
} scanner;

struct session;

typedef struct {
  struct session *session;
  int fd; /* -1 once closed */
  /* Edge-triggered readiness not yet used up: set by epoll, cleared on EAGAIN. */
  uint8_t readable;
  uint8_t writable;
  /* The peer hung up or failed: read to the end even after a short read. */
  uint8_t hangup;
  /* Ending: `out` is sent, the side half-closed; what still arrives is dropped until the peer closes. */
  uint8_t fin_sent;
  /* Bytes for this side that the kernel has not taken yet. */
  char *out;
  size_t out_start, out_end, out_cap;
} side;

typedef struct session {
  side client, server;
  scanner from_client, from_server;
  double id;
  double *counters;        /* a Float64Array that JavaScript owns and reads */
  napi_ref counters_ref;   /* keeps it alive until JavaScript has seen the end */
  uint64_t bytes_in, bytes_out, queries;
  uint8_t client_terminated;
  uint8_t last_server_type;
  uint8_t ended;           /* the end is decided and reported; only closing sides remain */
  uint8_t released;        /* JavaScript has seen the end: no command can name the session any more */
  uint8_t queued;          /* on the thread's list of sessions to run again */
  uint8_t closing;         /* on the thread's list of ended sessions with sides still open */
  uint8_t freed;           /* on the thread's list of sessions to free after this round */
  char *search_path;       /* a search_path the server reported, for JavaScript (deliver() hands it over) */
  char *retire;            /* when set, the client's next message gets this instead of an answer */
  size_t retire_len;
  /* Bytes JavaScript had read before the hand-over, delivered when the thread starts the session. */
  char *initial_to_client, *initial_to_server;
  size_t initial_to_client_len, initial_to_server_len;
  int64_t deadline;        /* after its end: when closing sides are closed regardless */
  struct command *release; /* the command that lets the thread free it, allocated up front: ending cannot fail */
  struct session *prev, *next;            /* all sessions the thread knows */
  struct session *next_queued, *next_closing, *next_freed;
} session;

typedef enum { CMD_START, CMD_RETIRE, CMD_TERMINATE, CMD_RELEASE, CMD_STOP } command_kind;

typedef struct command {
  command_kind kind;
  session *session;
  char *bytes;
  size_t length;
  struct command *next;
} command;

typedef struct {
  session *session;
  end_reason reason;
  uint8_t explained;
  char detail[200];
} report;

typedef struct {
  int epoll_fd;
  int wake_fd;
  pthread_t thread;
  pthread_mutex_t lock;
  command *head, *tail;
  napi_threadsafe_function on_end;
  napi_threadsafe_function on_parameter; /* NULL when JavaScript did not ask */
  size_t live; /* started sessions whose end JavaScript has not seen; JS thread only */
  char *server_lost;
  size_t server_lost_len;
  /* The thread's own state. */
  session *sessions;
  session *queued, *queued_tail;
  session *freed;
  /* Ended sessions in the order they ended, which is also the order of their deadlines. */
  session *closing, *closing_tail;
  char chunk[CHUNK];
} forwarder;

static const char TERMINATE_MESSAGE[5] = {TYPE_TERMINATE, 0, 0, 0, 4};

/* ---- small helpers ----------------------------------------------------------------------- */

static int64_t now_ms(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* JavaScript reads these while the thread writes them: whole 8-byte stores, never torn. */
static void publish(session *s, int slot, double value) {
  __atomic_store(&s->counters[slot], &value, __ATOMIC_RELAXED);
}

static void errno_text(char *into, size_t size, const char *syscall, int error) {
  const char *name = strerrorname_np(error);
  if (name) snprintf(into, size, "%s %s", syscall, name);
  else snprintf(into, size, "%s errno %d", syscall, error);
}

static int at_boundary(const scanner *sc) {
  return sc->remaining == 0 && sc->header_bytes == 0;
}

/* ---- buffered output --------------------------------------------------------------------- */

static int keep(side *sd, const char *bytes, size_t length) {
  if (length == 0) return 1;
  if (sd->out_start > 0 && sd->out_start == sd->out_end) sd->out_start = sd->out_end = 0;
  if (sd->out_cap - sd->out_end < length) {
    size_t pending = sd->out_end - sd->out_start;
    if (sd->out_start > 0) {
      memmove(sd->out, sd->out + sd->out_start, pending);
      sd->out_start = 0;
      sd->out_end = pending;
    }
    if (sd->out_cap - sd->out_end < length) {
      size_t cap = pending + length < CHUNK ? CHUNK : pending + length;
      char *grown = realloc(sd->out, cap);
      if (!grown) return 0;
      sd->out = grown;
      sd->out_cap = cap;
    }
  }
  memcpy(sd->out + sd->out_end, bytes, length);
  sd->out_end += length;
  return 1;
}

static int has_out(const side *sd) {
  return sd->out_end > sd->out_start;
}

static void drop_out(side *sd) {
  free(sd->out);
  sd->out = NULL;
  sd->out_start = sd->out_end = sd->out_cap = 0;
}

/*
 * Sends until all of it went or the kernel's buffer is full (then the side is no longer writable).
 * `*sent` says how much went. Returns 0, or the errno of a send that failed.
 */
static int send_some(side *sd, const char *bytes, size_t length, size_t *sent) {
  *sent = 0;
  while (*sent < length) {
    ssize_t n = send(sd->fd, bytes + *sent, length - *sent, MSG_NOSIGNAL);
    if (n > 0) {
      *sent += (size_t)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      sd->writable = 0;
      return 0;
    } else {
      return n < 0 ? errno : EPIPE;
    }
  }
  return 0;
}

/* Sends what the side has queued, as far as the kernel takes it; returns 0 or the failed send's errno. */
static int send_queued(side *sd) {
  size_t sent;
  int error = send_some(sd, sd->out + sd->out_start, sd->out_end - sd->out_start, &sent);
  sd->out_start += sent;
  return error;
}

/* ---- session lifecycle ------------------------------------------------------------------- */

static void post_report(forwarder *f, session *s, end_reason reason, int explained, const char *detail) {
  report *r = calloc(1, sizeof *r);
  if (!r) return; /* JavaScript never hears of it: the session leaks, nothing worse */
  r->session = s;
  r->reason = reason;
  r->explained = (uint8_t)explained;
  if (detail) snprintf(r->detail, sizeof r->detail, "%s", detail);
  if (napi_call_threadsafe_function(f->on_end, r, napi_tsfn_nonblocking) != napi_ok) free(r);
}

typedef struct {
  double id;
  char *value;
} parameter_report;

/* Tells JavaScript the server reported a new search_path (it may move the session to another version). */
static void report_search_path(forwarder *f, session *s) {
  char *value = s->search_path;
  s->search_path = NULL;
  parameter_report *r = f->on_parameter ? malloc(sizeof *r) : NULL;
  if (!r) {
    free(value);
    return;
  }
  r->id = s->id;
  r->value = value;
  if (napi_call_threadsafe_function(f->on_parameter, r, napi_tsfn_nonblocking) != napi_ok) {
    free(value);
    free(r);
  }
}

static void maybe_free(forwarder *f, session *s) {
  if (s->freed || !s->released || s->client.fd >= 0 || s->server.fd >= 0 || s->queued || s->closing) return;
  s->freed = 1;
  /* Freed after this round of events, which may still name it. */
  if (s->prev) s->prev->next = s->next;
  else f->sessions = s->next;
  if (s->next) s->next->prev = s->prev;
  s->next_freed = f->freed;
  f->freed = s;
}

static void close_side(forwarder *f, side *sd) {
  if (sd->fd < 0) return;
  epoll_ctl(f->epoll_fd, EPOLL_CTL_DEL, sd->fd, NULL);
  close(sd->fd);
  sd->fd = -1;
  drop_out(sd);
  maybe_free(f, sd->session);
}

/* An ended session's closing sides: send what is left, half-close, drop input until the peer hangs up. */
static void linger(forwarder *f, session *s) {
  side *sides[2] = {&s->client, &s->server};
  for (int i = 0; i < 2; i++) {
    side *sd = sides[i];
    if (sd->fd >= 0 && has_out(sd) && send_queued(sd) != 0) close_side(f, sd);
    if (sd->fd < 0 || has_out(sd)) continue;
    if (!sd->fin_sent) {
      drop_out(sd);
      shutdown(sd->fd, SHUT_WR);
      sd->fin_sent = 1;
    }
    for (;;) {
      ssize_t n = read(sd->fd, f->chunk, CHUNK);
      if (n > 0) continue;
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        sd->readable = 0;
        break;
      }
      close_side(f, sd);
      break;
    }
  }
}

static void close_as(forwarder *f, side *sd, close_mode mode, const char *last, size_t last_len) {
  if (sd->fd < 0) return;
  if (mode == CLOSE_NOW || !keep(sd, last, last_len)) close_side(f, sd);
}

/*
 * Decides a session's end: what each side is sent before it is closed. The counters are final at
 * this point; the report goes out after the first attempt to send those last bytes.
 */
static void end_session(forwarder *f, session *s, end_reason reason, int explained, const char *detail,
                        close_mode client_mode, const char *to_client, size_t to_client_len,
                        close_mode server_mode, const char *to_server, size_t to_server_len) {
  s->ended = 1;
  s->deadline = now_ms(CLOCK_MONOTONIC) + LINGER_MS;
  close_as(f, &s->client, client_mode, to_client, to_client_len);
  close_as(f, &s->server, server_mode, to_server, to_server_len);
  /* Only now: it may be what the client was just given. */
  free(s->retire);
  s->retire = NULL;
  if (s->client.fd >= 0 || s->server.fd >= 0) {
    s->closing = 1;
    s->next_closing = NULL;
    if (f->closing_tail) f->closing_tail->next_closing = s;
    else f->closing = s;
    f->closing_tail = s;
    linger(f, s);
  }
  post_report(f, s, reason, explained, detail);
}

/* The client may be told something only between two server messages; otherwise it is cut off. */
static close_mode client_mode(session *s) {
  return at_boundary(&s->from_server) ? CLOSE_AFTER : CLOSE_NOW;
}

/* Terminate goes to the server only between two client messages; otherwise it is cut off. */
static close_mode server_mode(session *s) {
  return at_boundary(&s->from_client) ? CLOSE_AFTER : CLOSE_NOW;
}

static void end_with_error(forwarder *f, session *s, end_reason reason, const char *detail, const char *error, size_t error_len) {
  close_mode to_server = server_mode(s);
  end_session(f, s, reason, 0, detail, client_mode(s), error, error_len, to_server, TERMINATE_MESSAGE,
              to_server == CLOSE_AFTER ? sizeof TERMINATE_MESSAGE : 0);
}

/* A side hung up or failed (`error` 0 for a clean end of stream). */
static void peer_closed(forwarder *f, session *s, side *sd, int error, const char *syscall) {
  char detail[200] = "";
  if (error) errno_text(detail, sizeof detail, syscall, error);
  if (sd == &s->client) {
    /* The server sees end-of-stream after whatever is still queued for it. */
    end_session(f, s, END_CLIENT_CLOSED, 0, detail, CLOSE_NOW, NULL, 0, CLOSE_AFTER, NULL, 0);
    return;
  }
  /* The server said why (an ErrorResponse) or was asked to go (Terminate): pass its end on. */
  int explained = s->last_server_type == TYPE_ERROR || s->client_terminated;
  if (explained) {
    end_session(f, s, END_SERVER_CLOSED, 1, detail, CLOSE_AFTER, NULL, 0, CLOSE_NOW, NULL, 0);
  } else {
    end_session(f, s, END_SERVER_CLOSED, 0, detail, client_mode(s), f->server_lost, f->server_lost_len, CLOSE_NOW, NULL, 0);
  }
}

static void internal_failure(forwarder *f, session *s, const char *what) {
  end_session(f, s, END_INTERNAL, 0, what, CLOSE_NOW, NULL, 0, CLOSE_NOW, NULL, 0);
}

/* ---- forwarding -------------------------------------------------------------------------- */

/* Sends now what the kernel takes, keeps the rest. Returns 0 if the session ended. */
static int send_or_keep(forwarder *f, session *s, side *to, const char *bytes, size_t length) {
  /* Behind bytes already waiting, these wait too: order is kept. */
  if (!has_out(to)) {
    size_t sent;
    int error = send_some(to, bytes, length, &sent);
    if (error) {
      peer_closed(f, s, to, error, "write");
      return 0;
    }
    bytes += sent;
    length -= sent;
  }
  if (length > 0 && !keep(to, bytes, length)) {
    internal_failure(f, s, "out of memory");
    return 0;
  }
  return 1;
}

/* Sends what a side has waiting. Returns 0 if the session ended. */
static int flush(forwarder *f, session *s, side *to) {
  if (has_out(to) && to->writable) {
    int error = send_queued(to);
    if (error) {
      peer_closed(f, s, to, error, "write");
      return 0;
    }
  }
  /* An idle session holds no buffer. */
  if (!has_out(to) && to->out) drop_out(to);
  return 1;
}

static void describe_type(char *into, size_t size, uint8_t type) {
  if (type >= 0x20 && type < 0x7f) snprintf(into, size, "'%c'", type);
  else snprintf(into, size, "0x%02x", type);
}

/* The ErrorResponse encodeErrorResponse would build for a FATAL 08P01 with this message. */
static size_t protocol_error_message(char *into, size_t size, const char *message) {
  int body = snprintf(into + 5, size - 5, "SFATAL%cVFATAL%cC08P01%cM%s%c", 0, 0, 0, message, 0);
  if (body < 0 || (size_t)body + 6 > size) return 0;
  into[5 + body] = 0;
  uint32_t length = (uint32_t)body + 1 + 4;
  into[0] = 'E';
  into[1] = (char)(length >> 24);
  into[2] = (char)(length >> 16);
  into[3] = (char)(length >> 8);
  into[4] = (char)length;
  return (size_t)length + 1;
}

/* A whole ParameterStatus body (name NUL value NUL): a search_path is kept for JavaScript. */
static void parameter_read(scanner *sc, session *s) {
  static const char NAME[] = "search_path";
  const char *body = sc->capture;
  uint32_t length = sc->captured;
  if (length > sizeof NAME && memcmp(body, NAME, sizeof NAME) == 0 && body[length - 1] == 0) {
    size_t value_length = length - sizeof NAME - 1;
    char *value = malloc(value_length + 1);
    if (value) {
      memcpy(value, body + sizeof NAME, value_length + 1);
      free(s->search_path);
      s->search_path = value;
    }
  }
  free(sc->capture);
  sc->capture = NULL;
  sc->captured = 0;
}

/*
 * Follows frames through one read, counting the client's queries (and noticing its Terminate) or
 * remembering the server's last message type. Returns the offset of a header whose length is
 * invalid (-1: none; -2: it began in an earlier read), with its type and length.
 */
static long scan(scanner *sc, const uint8_t *bytes, size_t size, session *s, int from_client,
                 uint8_t *bad_type, int32_t *bad_length, int *counted) {
  size_t offset = 0;
  while (offset < size) {
    if (sc->remaining > 0) {
      size_t take = size - offset < sc->remaining ? size - offset : sc->remaining;
      if (sc->capture) {
        memcpy(sc->capture + sc->captured, bytes + offset, take);
        sc->captured += (uint32_t)take;
      }
      sc->remaining -= (uint32_t)take;
      offset += take;
      if (sc->remaining == 0 && sc->capture) parameter_read(sc, s);
      continue;
    }
    uint8_t type;
    int32_t length;
    long start;
    if (sc->header_bytes == 0 && size - offset >= 5) {
      start = (long)offset;
      type = bytes[offset];
      length = (int32_t)(((uint32_t)bytes[offset + 1] << 24) | ((uint32_t)bytes[offset + 2] << 16) |
                         ((uint32_t)bytes[offset + 3] << 8) | bytes[offset + 4]);
      offset += 5;
    } else {
      if (sc->header_bytes == 0) {
        sc->header_type = bytes[offset];
        sc->header_length = 0;
      } else {
        sc->header_length = (sc->header_length << 8) | bytes[offset];
      }
      sc->header_bytes++;
      offset++;
      if (sc->header_bytes < 5) continue;
      /* Completed here, so it began in an earlier read (a header wholly in this one takes the branch above). */
      start = -2;
      sc->header_bytes = 0;
      type = sc->header_type;
      length = (int32_t)sc->header_length;
    }
    if (length < 4 || length > MAX_MESSAGE_LENGTH) {
      *bad_type = type;
      *bad_length = length;
      return start;
    }
    sc->remaining = (uint32_t)length - 4;
    if (from_client) {
      if (type == TYPE_QUERY || type == TYPE_EXECUTE) {
        s->queries++;
        *counted = 1;
      } else if (type == TYPE_TERMINATE) {
        s->client_terminated = 1;
      }
    } else {
      s->last_server_type = type;
      if (type == TYPE_PARAMETER_STATUS && length > 4 && length - 4 <= MAX_PARAMETER_BODY) {
        sc->capture = malloc((size_t)length - 4); /* without memory the report is skipped, the bytes still go */
        sc->captured = 0;
      }
    }
  }
  return -1;
}

/* Bytes read from one side: looked at, counted, passed on. Returns 0 if the session ended. */
static int deliver(forwarder *f, session *s, int from_client, const char *bytes, size_t length) {
  uint8_t bad_type = 0;
  int32_t bad_length = 0;
  int counted = 0;
  if (!from_client) {
    s->bytes_out += length;
    publish(s, BYTES_OUT, (double)s->bytes_out);
    if (scan(&s->from_server, (const uint8_t *)bytes, length, s, 0, &bad_type, &bad_length, &counted) != -1) {
      char type[8], detail[120];
      describe_type(type, sizeof type, bad_type);
      snprintf(detail, sizeof detail, "invalid length %d for message type %s", bad_length, type);
      end_session(f, s, END_SERVER_PROTOCOL, 0, detail, CLOSE_NOW, NULL, 0, CLOSE_NOW, NULL, 0);
      return 0;
    }
    if (s->search_path) report_search_path(f, s);
    return send_or_keep(f, s, &s->client, bytes, length);
  }
  if (s->retire && at_boundary(&s->from_client)) {
    /* The message that just began is not forwarded: the client is told its version is gone. */
    end_session(f, s, END_RETIRED, 0, NULL, client_mode(s), s->retire, s->retire_len, CLOSE_AFTER, TERMINATE_MESSAGE,
                sizeof TERMINATE_MESSAGE);
    return 0;
  }
  s->bytes_in += length;
  publish(s, BYTES_IN, (double)s->bytes_in);
  long bad = scan(&s->from_client, (const uint8_t *)bytes, length, s, 1, &bad_type, &bad_length, &counted);
  if (counted) {
    publish(s, QUERIES, (double)s->queries);
    publish(s, LAST_QUERY_AT, (double)now_ms(CLOCK_REALTIME));
  }
  if (bad == -1) return send_or_keep(f, s, &s->server, bytes, length);

  /* Whole messages before the broken header still go to the server, so it stays between messages. */
  if (bad > 0 && !send_or_keep(f, s, &s->server, bytes, (size_t)bad)) return 0;
  if (bad == -2) s->from_client.header_bytes = 1; /* part of the header already went: not a boundary */
  else s->from_client.remaining = 0;
  char type[8], message[120], error[200];
  describe_type(type, sizeof type, bad_type);
  snprintf(message, sizeof message, "invalid length %d for message type %s", bad_length, type);
  size_t error_len = protocol_error_message(error, sizeof error, message);
  end_with_error(f, s, END_CLIENT_PROTOCOL, message, error, error_len);
  return 0;
}

/* Reads one side and passes it on while the other side keeps up. Returns 0 if the session ended. */
static int relay(forwarder *f, session *s, side *from, side *to, int *more) {
  int from_client = from == &s->client;
  for (int turn = 0; from->readable && !has_out(to); turn++) {
    if (turn == READS_PER_TURN) {
      *more = 1;
      return 1;
    }
    ssize_t n = read(from->fd, f->chunk, CHUNK);
    if (n > 0) {
      /* A short read emptied the socket; the next arrival raises a new edge. */
      if (n < CHUNK && !from->hangup) from->readable = 0;
      if (!deliver(f, s, from_client, f->chunk, (size_t)n)) return 0;
    } else if (n == 0) {
      peer_closed(f, s, from, 0, "read");
      return 0;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      from->readable = 0;
    } else if (errno != EINTR) {
      peer_closed(f, s, from, errno, "read");
      return 0;
    }
  }
  return 1;
}

static void enqueue_again(forwarder *f, session *s) {
  if (s->queued) return;
  s->queued = 1;
  s->next_queued = NULL;
  if (f->queued_tail) f->queued_tail->next_queued = s;
  else f->queued = s;
  f->queued_tail = s;
}

static void pump(forwarder *f, session *s) {
  if (s->ended) {
    linger(f, s);
    return;
  }
  int more = 0;
  if (!flush(f, s, &s->server) || !flush(f, s, &s->client)) return;
  if (!relay(f, s, &s->client, &s->server, &more)) return;
  if (!relay(f, s, &s->server, &s->client, &more)) return;
  if (more) enqueue_again(f, s);
}

/* ---- commands from JavaScript ------------------------------------------------------------ */

static void start_session(forwarder *f, session *s) {
  s->next = f->sessions;
  if (f->sessions) f->sessions->prev = s;
  f->sessions = s;
  side *sides[2] = {&s->client, &s->server};
  for (int i = 0; i < 2; i++) {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = sides[i]};
    if (epoll_ctl(f->epoll_fd, EPOLL_CTL_ADD, sides[i]->fd, &ev) != 0) {
      char detail[200];
      errno_text(detail, sizeof detail, "epoll_ctl", errno);
      internal_failure(f, s, detail);
      return;
    }
  }
  /* As the JavaScript path does: the server's bytes first, then the client's. */
  int alive = 1;
  if (s->initial_to_client_len > 0) alive = deliver(f, s, 0, s->initial_to_client, s->initial_to_client_len);
  if (alive && s->initial_to_server_len > 0) deliver(f, s, 1, s->initial_to_server, s->initial_to_server_len);
  free(s->initial_to_client);
  free(s->initial_to_server);
  s->initial_to_client = s->initial_to_server = NULL;
}

static void free_session(session *s) {
  free(s->release);
  free(s->from_server.capture);
  free(s->search_path);
  free(s->retire);
  free(s->initial_to_client);
  free(s->initial_to_server);
  drop_out(&s->client);
  drop_out(&s->server);
  free(s);
}

/* Runs queued commands; returns 1 when the thread is to stop. */
static int run_commands(forwarder *f) {
  uint64_t ignored;
  while (read(f->wake_fd, &ignored, sizeof ignored) < 0 && errno == EINTR) {}
  pthread_mutex_lock(&f->lock);
  command *c = f->head;
  f->head = f->tail = NULL;
  pthread_mutex_unlock(&f->lock);
  int stop = 0;
  while (c) {
    command *next = c->next;
    session *s = c->session;
    switch (c->kind) {
      case CMD_START:
        start_session(f, s);
        break;
      case CMD_RETIRE:
        if (!s->ended && !s->retire) {
          s->retire = c->bytes;
          s->retire_len = c->length;
          c->bytes = NULL;
        }
        break;
      case CMD_TERMINATE:
        if (!s->ended) end_with_error(f, s, END_TERMINATED, NULL, c->bytes, c->length);
        break;
      case CMD_RELEASE:
        s->released = 1;
        maybe_free(f, s);
        break;
      case CMD_STOP:
        stop = 1;
        break;
    }
    free(c->bytes);
    free(c);
    c = next;
  }
  return stop;
}

/* Puts a command on the thread's queue and wakes it. */
static void enqueue(forwarder *f, command *c) {
  pthread_mutex_lock(&f->lock);
  if (f->tail) f->tail->next = c;
  else f->head = c;
  f->tail = c;
  pthread_mutex_unlock(&f->lock);
  uint64_t one = 1;
  while (write(f->wake_fd, &one, sizeof one) < 0 && errno == EINTR) {}
}

static int send_command(forwarder *f, command_kind kind, session *s, const char *bytes, size_t length) {
  command *c = calloc(1, sizeof *c);
  if (!c) return 0;
  if (length > 0) {
    c->bytes = malloc(length);
    if (!c->bytes) {
      free(c);
      return 0;
    }
    memcpy(c->bytes, bytes, length);
  }
  c->kind = kind;
  c->session = s;
  c->length = length;
  enqueue(f, c);
  return 1;
}

/* ---- the thread -------------------------------------------------------------------------- */

/* Closes the sides of ended sessions whose time is up; returns the wait until the next such time. */
static int expire(forwarder *f) {
  int64_t now = f->closing ? now_ms(CLOCK_MONOTONIC) : 0;
  while (f->closing) {
    session *s = f->closing;
    int open = s->client.fd >= 0 || s->server.fd >= 0;
    if (open && s->deadline > now) return (int)(s->deadline - now);
    f->closing = s->next_closing;
    if (!f->closing) f->closing_tail = NULL;
    s->closing = 0;
    close_side(f, &s->client);
    close_side(f, &s->server);
    maybe_free(f, s);
  }
  return -1;
}

static void *run(void *arg) {
  forwarder *f = arg;
  struct epoll_event events[MAX_EVENTS];
  int stop = 0;
  int timeout = -1;
  while (!stop) {
    int n = epoll_wait(f->epoll_fd, events, MAX_EVENTS, f->queued ? 0 : timeout);
    if (n < 0 && errno != EINTR) break;
    /* Commands first: a retire or terminate applies to whatever a socket in this round brought. */
    for (int i = 0; i < n; i++) {
      if (!events[i].data.ptr) stop |= run_commands(f);
    }
    for (int i = 0; i < n; i++) {
      side *sd = events[i].data.ptr;
      if (!sd || sd->fd < 0) continue;
      uint32_t ev = events[i].events;
      if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) sd->hangup = 1;
      if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) sd->readable = 1;
      if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) sd->writable = 1;
      pump(f, sd->session);
    }
    /* Sessions that used up their turn go again, after everyone with an event had theirs. */
    session *again = f->queued;
    f->queued = f->queued_tail = NULL;
    while (again) {
      session *s = again;
      again = s->next_queued;
      s->queued = 0;
      pump(f, s);
      maybe_free(f, s);
    }
    timeout = expire(f);
    while (f->freed) {
      session *s = f->freed;
      f->freed = s->next_freed;
      free_session(s);
    }
  }
  return NULL;
}

/* ---- N-API ------------------------------------------------------------------------------- */

#define CHECK(call)                                                                                 \
  do {                                                                                              \
    if ((call) != napi_ok) {                                                                        \
      napi_throw_error(env, NULL, "tandem forwarder: " #call " failed");                            \
      return NULL;                                                                                  \
    }                                                                                               \
  } while (0)

static napi_value throw_errno(napi_env env, const char *what, int error) {
  char text[200];
  errno_text(text, sizeof text, what, error);
  napi_throw_error(env, NULL, text);
  return NULL;
}

/* On the JS thread: a session ended. */
static void call_on_end(napi_env env, napi_value js_callback, void *context, void *data) {
  forwarder *f = context;
  report *r = data;
  if (!env) {
    free(r);
    return;
  }
  session *s = r->session;
  if (s->counters_ref) {
    napi_delete_reference(env, s->counters_ref);
    s->counters_ref = NULL;
  }
  napi_value args[4], undefined;
  napi_get_undefined(env, &undefined);
  napi_create_double(env, s->id, &args[0]);
  napi_create_string_utf8(env, REASON_NAMES[r->reason], NAPI_AUTO_LENGTH, &args[1]);
  napi_create_string_utf8(env, r->detail, NAPI_AUTO_LENGTH, &args[2]);
  napi_get_boolean(env, r->explained, &args[3]);
  napi_call_function(env, undefined, js_callback, 4, args, NULL);
  /* Live sessions keep the process running, as their sockets did in Node. */
  if (--f->live == 0) napi_unref_threadsafe_function(env, f->on_end);
  /* Allocated when the session started, so that no allocation failure can keep it from being freed. */
  command *release = s->release;
  s->release = NULL;
  enqueue(f, release);
  free(r);
}

/* On the JS thread: a session's server reported a search_path; by id, since the session may be gone. */
static void call_on_parameter(napi_env env, napi_value js_callback, void *context, void *data) {
  (void)context;
  parameter_report *r = data;
  if (env) {
    napi_value args[2], undefined;
    napi_get_undefined(env, &undefined);
    napi_create_double(env, r->id, &args[0]);
    napi_create_string_utf8(env, r->value, NAPI_AUTO_LENGTH, &args[1]);
    napi_call_function(env, undefined, js_callback, 2, args, NULL);
  }
  free(r->value);
  free(r);
}

static void cleanup(void *arg) {
  forwarder *f = arg;
  send_command(f, CMD_STOP, NULL, NULL, 0);
  pthread_join(f->thread, NULL);
  /* Sessions started too late for the thread to see them. */
  for (command *c = f->head, *next; c; c = next) {
    next = c->next;
    if (c->kind == CMD_START) {
      close(c->session->client.fd);
      close(c->session->server.fd);
      free_session(c->session);
    }
    free(c->bytes);
    free(c);
  }
  for (session *s = f->sessions, *next; s; s = next) {
    next = s->next;
    if (s->client.fd >= 0) close(s->client.fd);
    if (s->server.fd >= 0) close(s->server.fd);
    free_session(s);
  }
  napi_release_threadsafe_function(f->on_end, napi_tsfn_abort);
  if (f->on_parameter) napi_release_threadsafe_function(f->on_parameter, napi_tsfn_abort);
  close(f->epoll_fd);
  close(f->wake_fd);
  free(f->server_lost);
  free(f);
}

/* Marks the externals that are sessions, so that no other external can be passed off as one. */
static const napi_type_tag SESSION_TAG = {0x74616e64656d2d73ULL, 0x657373696f6e2d31ULL};

static forwarder *instance(napi_env env) {
  void *data = NULL;
  napi_get_instance_data(env, &data);
  if (!data) napi_throw_error(env, NULL, "tandem forwarder: init() was not called");
  return data;
}

/* init(onEnd(id, reason, detail, explained), serverLostErrorResponse[, onSearchPath(id, value)]) */
static napi_value init(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *existing = NULL;
  napi_get_instance_data(env, &existing);
  if (existing) {
    napi_throw_error(env, NULL, "tandem forwarder: init() was already called");
    return NULL;
  }
  void *lost;
  size_t lost_len;
  if (argc < 2 || napi_get_buffer_info(env, argv[1], &lost, &lost_len) != napi_ok) {
    napi_throw_type_error(env, NULL, "init(onEnd, serverLost: Buffer)");
    return NULL;
  }
  forwarder *f = calloc(1, sizeof *f);
  if (!f) return throw_errno(env, "calloc", ENOMEM);
  f->epoll_fd = f->wake_fd = -1;
  /* From here every failure goes through `fail`, which frees whatever was taken so far. */
  const char *failed = NULL;
  int error = 0;
  f->server_lost = malloc(lost_len);
  if (!f->server_lost) {
    failed = "malloc";
    error = ENOMEM;
    goto fail;
  }
  memcpy(f->server_lost, lost, lost_len);
  f->server_lost_len = lost_len;
  pthread_mutex_init(&f->lock, NULL);
  f->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  f->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  struct epoll_event wake = {.events = EPOLLIN, .data.ptr = NULL};
  if (f->epoll_fd < 0 || f->wake_fd < 0 || epoll_ctl(f->epoll_fd, EPOLL_CTL_ADD, f->wake_fd, &wake) != 0) {
    failed = "epoll";
    error = errno;
    goto fail;
  }
  napi_value name;
  napi_valuetype third = napi_undefined;
  if (argc >= 3) napi_typeof(env, argv[2], &third);
  if (napi_create_string_utf8(env, "tandem forwarder", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, NULL, NULL, f, call_on_end, &f->on_end) != napi_ok ||
      napi_unref_threadsafe_function(env, f->on_end) != napi_ok ||
      (third == napi_function &&
       (napi_create_threadsafe_function(env, argv[2], NULL, name, 0, 1, NULL, NULL, f, call_on_parameter, &f->on_parameter) != napi_ok ||
        napi_unref_threadsafe_function(env, f->on_parameter) != napi_ok))) {
    failed = "napi_create_threadsafe_function";
    error = EINVAL;
    goto fail;
  }
  error = pthread_create(&f->thread, NULL, run, f);
  if (error) {
    failed = "pthread_create";
    goto fail;
  }
  if (napi_set_instance_data(env, f, NULL, NULL) != napi_ok || napi_add_env_cleanup_hook(env, cleanup, f) != napi_ok) {
    /* The thread runs: stop it the way the cleanup hook would, which also frees everything. */
    napi_set_instance_data(env, NULL, NULL, NULL);
    cleanup(f);
    napi_throw_error(env, NULL, "tandem forwarder: could not register the forwarder with Node");
    return NULL;
  }
  return NULL;

fail:
  if (f->on_end) napi_release_threadsafe_function(f->on_end, napi_tsfn_abort);
  if (f->on_parameter) napi_release_threadsafe_function(f->on_parameter, napi_tsfn_abort);
  if (f->epoll_fd >= 0) close(f->epoll_fd);
  if (f->wake_fd >= 0) close(f->wake_fd);
  free(f->server_lost);
  free(f);
  return throw_errno(env, failed, error);
}

static int take_fd(int fd) {
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) return -1;
  int flags = fcntl(copy, F_GETFL);
  if (flags < 0 || fcntl(copy, F_SETFL, flags | O_NONBLOCK) < 0) {
    int error = errno;
    close(copy);
    errno = error;
    return -1;
  }
  return copy;
}

static int copy_bytes(napi_env env, napi_value value, char **into, size_t *length) {
  void *data;
  size_t size;
  if (napi_get_buffer_info(env, value, &data, &size) != napi_ok) return 0;
  *length = size;
  *into = NULL;
  if (size == 0) return 1;
  *into = malloc(size);
  if (!*into) return 0;
  memcpy(*into, data, size);
  return 1;
}

/* start(id, clientFd, serverFd, counters: Float64Array(4), toClient: Buffer, toServer: Buffer) → handle */
static napi_value start(napi_env env, napi_callback_info info) {
  forwarder *f = instance(env);
  if (!f) return NULL;
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  double id;
  int32_t client_fd, server_fd;
  napi_typedarray_type type;
  size_t count;
  void *counters;
  if (argc < 6 || napi_get_value_double(env, argv[0], &id) != napi_ok ||
      napi_get_value_int32(env, argv[1], &client_fd) != napi_ok ||
      napi_get_value_int32(env, argv[2], &server_fd) != napi_ok ||
      napi_get_typedarray_info(env, argv[3], &type, &count, &counters, NULL, NULL) != napi_ok ||
      type != napi_float64_array || count < COUNTERS) {
    napi_throw_type_error(env, NULL, "start(id, clientFd, serverFd, counters: Float64Array(4), toClient: Buffer, toServer: Buffer)");
    return NULL;
  }
  session *s = calloc(1, sizeof *s);
  if (!s) return throw_errno(env, "calloc", ENOMEM);
  s->client.session = s->server.session = s;
  s->client.fd = s->server.fd = -1;
  s->client.writable = s->server.writable = 1;
  s->id = id;
  s->counters = counters;
  s->release = calloc(1, sizeof *s->release);
  if (!s->release) {
    free_session(s);
    return throw_errno(env, "calloc", ENOMEM);
  }
  s->release->kind = CMD_RELEASE;
  s->release->session = s;
  if (!copy_bytes(env, argv[4], &s->initial_to_client, &s->initial_to_client_len) ||
      !copy_bytes(env, argv[5], &s->initial_to_server, &s->initial_to_server_len)) {
    free_session(s);
    napi_throw_type_error(env, NULL, "start: toClient and toServer must be Buffers");
    return NULL;
  }
  s->client.fd = take_fd(client_fd);
  s->server.fd = s->client.fd < 0 ? -1 : take_fd(server_fd);
  if (s->client.fd < 0 || s->server.fd < 0) {
    int error = errno;
    if (s->client.fd >= 0) close(s->client.fd);
    free_session(s);
    return throw_errno(env, "dup", error);
  }
  if (napi_create_reference(env, argv[3], 1, &s->counters_ref) != napi_ok) {
    close(s->client.fd);
    close(s->server.fd);
    free_session(s);
    napi_throw_error(env, NULL, "tandem forwarder: napi_create_reference failed");
    return NULL;
  }
  if (!send_command(f, CMD_START, s, NULL, 0)) {
    napi_delete_reference(env, s->counters_ref);
    close(s->client.fd);
    close(s->server.fd);
    free_session(s);
    return throw_errno(env, "start", ENOMEM);
  }
  if (f->live++ == 0) napi_ref_threadsafe_function(env, f->on_end);
  napi_value handle;
  CHECK(napi_create_external(env, s, NULL, NULL, &handle));
  CHECK(napi_type_tag_object(env, handle, &SESSION_TAG));
  return handle;
}

/* retire(handle, errorResponse) and terminate(handle, errorResponse) */
static napi_value command_with_bytes(napi_env env, napi_callback_info info, command_kind kind) {
  forwarder *f = instance(env);
  if (!f) return NULL;
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *s;
  void *bytes;
  size_t length;
  bool tagged = false;
  if (argc < 2 || napi_check_object_type_tag(env, argv[0], &SESSION_TAG, &tagged) != napi_ok || !tagged ||
      napi_get_value_external(env, argv[0], &s) != napi_ok ||
      napi_get_buffer_info(env, argv[1], &bytes, &length) != napi_ok) {
    napi_throw_type_error(env, NULL, "(handle, errorResponse: Buffer)");
    return NULL;
  }
  if (!send_command(f, kind, s, bytes, length)) return throw_errno(env, "command", ENOMEM);
  return NULL;
}

static napi_value retire(napi_env env, napi_callback_info info) {
  return command_with_bytes(env, info, CMD_RETIRE);
}

static napi_value terminate(napi_env env, napi_callback_info info) {
  return command_with_bytes(env, info, CMD_TERMINATE);
}

/*
 * scanFrames(chunks: Buffer[], fromClient: boolean): the frame scanner alone, over the chunks as one
 * stream, for its unit test (the same cases as FrameScanner's): what it counted and noticed, where it
 * found a broken length, and the search_path a server ParameterStatus carried.
 */
static napi_value scan_frames(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  bool from_client = false;
  uint32_t count = 0;
  bool is_array = false;
  if (argc < 2 || napi_is_array(env, argv[0], &is_array) != napi_ok || !is_array || napi_get_array_length(env, argv[0], &count) != napi_ok ||
      napi_get_value_bool(env, argv[1], &from_client) != napi_ok) {
    napi_throw_type_error(env, NULL, "scanFrames(chunks: Buffer[], fromClient: boolean)");
    return NULL;
  }
  session *s = calloc(1, sizeof *s);
  if (!s) return throw_errno(env, "calloc", ENOMEM);
  s->client.fd = s->server.fd = -1;
  scanner *sc = from_client ? &s->from_client : &s->from_server;
  uint8_t bad_type = 0;
  int32_t bad_length = 0;
  int counted = 0;
  long bad = -1;
  uint32_t bad_chunk = 0;
  char *search_path = NULL;
  for (uint32_t i = 0; i < count && bad == -1; i++) {
    napi_value chunk;
    void *data;
    size_t length;
    if (napi_get_element(env, argv[0], i, &chunk) != napi_ok || napi_get_buffer_info(env, chunk, &data, &length) != napi_ok) {
      free_session(s);
      napi_throw_type_error(env, NULL, "scanFrames: every chunk must be a Buffer");
      return NULL;
    }
    bad = scan(sc, data, length, s, from_client, &bad_type, &bad_length, &counted);
    bad_chunk = i;
    if (s->search_path) {
      free(search_path);
      search_path = s->search_path;
      s->search_path = NULL;
    }
  }
  napi_value result, value;
  napi_create_object(env, &result);
  napi_create_double(env, (double)s->queries, &value);
  napi_set_named_property(env, result, "queries", value);
  napi_get_boolean(env, s->client_terminated, &value);
  napi_set_named_property(env, result, "terminated", value);
  napi_create_uint32(env, s->last_server_type, &value);
  napi_set_named_property(env, result, "lastServerType", value);
  napi_get_boolean(env, at_boundary(sc), &value);
  napi_set_named_property(env, result, "atBoundary", value);
  if (search_path) napi_create_string_utf8(env, search_path, NAPI_AUTO_LENGTH, &value);
  else napi_get_null(env, &value);
  napi_set_named_property(env, result, "searchPath", value);
  if (bad == -1) {
    napi_get_null(env, &value);
  } else {
    napi_value field;
    napi_create_object(env, &value);
    napi_create_uint32(env, bad_chunk, &field);
    napi_set_named_property(env, value, "chunk", field);
    napi_create_int64(env, bad, &field);
    napi_set_named_property(env, value, "offset", field);
    napi_create_uint32(env, bad_type, &field);
    napi_set_named_property(env, value, "type", field);
    napi_create_int32(env, bad_length, &field);
    napi_set_named_property(env, value, "length", field);
  }
  napi_set_named_property(env, result, "bad", value);
  free(search_path);
  free_session(s);
  return result;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor methods[] = {
      {"scanFrames", NULL, scan_frames, NULL, NULL, NULL, napi_default, NULL},
      {"init", NULL, init, NULL, NULL, NULL, napi_default, NULL},
      {"start", NULL, start, NULL, NULL, NULL, napi_default, NULL},
      {"retire", NULL, retire, NULL, NULL, NULL, napi_default, NULL},
      {"terminate", NULL, terminate, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof methods / sizeof methods[0], methods);
  return exports;
}
