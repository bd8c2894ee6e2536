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
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sha1.h"

/* One read; also the most a direction keeps unsent before its source is no longer read. */
#define CHUNK 65536
/* Reads per direction before other sessions get a turn. */
#define READS_PER_TURN 16
/* How long a side that was sent its last bytes may take to hang up before it is closed (FATAL_LINGER_MS). */
#define LINGER_MS 2000
/* A server connection parked this long goes back to JavaScript's pool (its idle and lifetime rules). */
#define PARK_IDLE_MS 200
/* The largest message PostgreSQL accepts at all (MAX_MESSAGE_LENGTH in frames.ts). */
#define MAX_MESSAGE_LENGTH 0x3fffffff
#define MAX_EVENTS 256

#define TYPE_QUERY 0x51     /* 'Q' */
#define TYPE_EXECUTE 0x45   /* 'E' from the client */
#define TYPE_TERMINATE 0x58 /* 'X' */
#define TYPE_ERROR 0x45     /* 'E' from the server */
#define TYPE_PARAMETER_STATUS 0x53 /* 'S' from the server */
#define TYPE_READY_FOR_QUERY 0x5a  /* 'Z' */
/* ParameterStatus bodies longer than this are passed on without being read. */
#define MAX_PARAMETER_BODY 4096

/* Slots of the counters array JavaScript reads (NativeCounter in native.ts). */
enum {
  BYTES_IN, BYTES_OUT, QUERIES, LAST_QUERY_AT,
  /* Pooled sessions: the server connection held now (its id, 0: none), since when the client waits
   * for one (ms since the epoch, 0: not waiting), and PgBouncer's SHOW STATS figures. */
  SERVER_ID, WAITING_SINCE, TRANSACTIONS, HELD_US, WAITED_US, REQUESTS, REQUEST_US,
  /* Its named statements (SHOW CLIENTS prepared_statements). */
  PREPARED,
  COUNTERS
};

/*
 * A pooled session's client messages wait in `held` until the request they belong to is whole (it
 * ends with a Sync or a Query) and checked; a message or request longer than this goes to
 * JavaScript instead, which streams it.
 */
#define HOLD_LIMIT CHUNK

typedef enum {
  END_CLIENT_CLOSED,
  END_SERVER_CLOSED,
  END_CLIENT_PROTOCOL,
  END_SERVER_PROTOCOL,
  END_RETIRED,
  END_TERMINATED,
  END_INTERNAL,
  END_HANDED_BACK, /* pooled: JavaScript forwards the client from here on (and holds its server connection) */
  END_POOL_ERROR,  /* pooled: no server connection came (the detail is JavaScript's: SQLSTATE, space, message) */
} end_reason;

static const char *const REASON_NAMES[] = {
    "client_closed", "server_closed", "client_protocol", "server_protocol", "retired", "terminated", "internal", "handed_back", "pool_error",
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
  /* The next payload byte is a ReadyForQuery's transaction status (pooled sessions). */
  uint8_t status_next;
} scanner;

struct session;
struct client_statement;

/* What an epoll event's pointer names: a session's side, or a pooled server connection. */
enum { WATCH_SIDE, WATCH_LINK, WATCH_LISTENER, WATCH_PENDING };

typedef struct {
  uint8_t watch; /* WATCH_SIDE (first, as in link) */
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
  struct listener *login_listener; /* a native login: the listener that accepted it (count_native_end) */
  uint8_t end_counted;             /* its end gave its --max-client-conn place back; the report may wait (post) */
  scanner from_client, from_server;
  double id;
  double *counters;        /* a Float64Array that JavaScript owns and reads */
  uint8_t owns_counters;   /* JavaScript never had them (a brief client, fold_brief): freed with the session */
  struct report *login_report; /* a native login's REPORT_LOGIN, while login_batch is the outbox's batch (fold_brief) */
  uint64_t login_batch;
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
  /*
   * Pooled (transaction mode): the server side is a link of the session's pool, held for one
   * transaction at a time (fd -1 between them). See "pooled sessions" below.
   */
  uint8_t pooled;
  struct pool *pool;
  struct server_link *link;      /* the server connection held now */
  uint8_t wanting;        /* in the pool's queue of sessions waiting for a link */
  struct session *next_waiting;
  int64_t wait_started_us, taken_us;
  uint8_t handing;        /* the client goes back to JavaScript at the next quiet moment */
  uint8_t ready_seen;     /* a ReadyForQuery went through in this read */
  uint8_t server_status;  /* the last ReadyForQuery's transaction status: 'I', 'T' or 'E' */
  uint32_t outstanding;   /* Syncs and Queries sent whose ReadyForQuery has not come */
  char *held;             /* client bytes not sent yet */
  size_t held_len, held_cap;
  size_t ready_len;       /* held[0 .. ready_len): whole, checked requests waiting for a server connection */
  uint32_t ready_requests; /* how many ReadyForQuery they will bring */
  size_t scan_at;         /* held[scan_at ..]: messages not looked at yet */
  int64_t request_started_us;
  double transactions, held_us, waited_us, requests, request_us; /* SHOW STATS, published as counters */
  /*
   * Named statements (see "prepared statements"): the client's, by its names; whether its held
   * requests name one; whether its traffic is rewritten (from its first named statement on); the
   * replies its messages wait for on the link (a ring); and the server's skip to the next Sync.
   */
  struct client_statement *statements;
  uint32_t statement_count;
  size_t statement_bytes;
  uint8_t named_held;    /* or a Flush: either needs the replies counted */
  uint8_t tracking;
  uint8_t skipping;
  uint8_t open_request;  /* a Flush went out and its Sync has not: the link is the session's until then */
  struct pending_reply *replies;
  uint32_t reply_head, reply_count, reply_cap;
  /* The server's frames as the rewriting sees them: a header being assembled, the rest of a frame. */
  uint8_t frame_header[5];
  uint8_t frame_header_len;
  uint8_t frame_drop;       /* the current frame is not the client's (a reply to what the proxy injected) */
  uint8_t frame_end_action; /* what its end does to the replies (FRAME_*) */
  uint32_t frame_remaining;
  struct session *prev, *next;            /* all sessions the thread knows */
  struct session *next_queued, *next_closing, *next_freed;
} session;

/*
 * A server connection of JavaScript's pool that the thread holds for a pool's sessions: lent to one
 * of them for a transaction, or parked until the next one wants it. Its descriptor is the thread's
 * duplicate, watched by epoll all along (a parked connection that speaks or hangs up goes back).
 */
typedef struct server_link {
  uint8_t watch; /* WATCH_LINK (first, as in side) */
  int fd;
  double server_id;
  struct pool *pool;
  struct session *user; /* NULL while parked */
  int64_t parked_at;    /* ms, monotonic */
  int64_t expires_at;   /* ms, monotonic: its server_lifetime; 0: none */
  uint32_t generation;  /* its pool's generation when lent: an older one goes back as it comes free (RECONNECT) */
  struct server_link *next_parked;
  /*
   * The named statements prepared on the connection (server names), whoever holds it: JavaScript
   * lends them with it and has them back with it. At most `capacity` (--max-prepared-statements);
   * the least recently used (smallest `used`) is closed to make room.
   */
  struct link_statement *statements;
  uint32_t statement_count, statement_alloc, capacity;
  uint64_t statement_tick;
} server_link;

/*
 * Slots of a pool's figures (a Float64Array JavaScript owns and reads at scrape time): sessions
 * waiting, links parked, and the histogram of how long its sessions waited for a link (0 when one
 * was parked), in µs: count, sum, then one count per bucket of `bounds` and one above them.
 */
enum { POOL_WAITING, POOL_PARKED, POOL_WAIT_COUNT, POOL_WAIT_SUM_US, POOL_WAIT_BUCKETS };
#define MAX_WAIT_BOUNDS 32

/*
 * The sessions of one pool (database, user, version and client parameters) and the links the
 * thread holds for them. Allocated by JavaScript (pool()); freed once JavaScript closed it
 * (closePool) and nothing names it any more (see "closing a pool").
 */
typedef struct pool {
  double id;
  double *figures;
  napi_ref figures_ref;
  double bounds[MAX_WAIT_BOUNDS];
  uint32_t bound_count;
  uint32_t parked_count;
  server_link *parked;                       /* most recently parked first */
  struct session *waiting, *waiting_tail;
  uint32_t waiting_count;
  uint32_t asked;     /* REPORT_WANTs JavaScript has not answered yet */
  uint32_t give_back; /* links JavaScript asked back: they go back as they come free */
  uint32_t links;     /* lent and parked */
  uint8_t returning;  /* JavaScript drains the pool: every link goes back as it comes free */
  uint8_t known;      /* on the thread's list of pools (for parked links that idle too long) */
  uint32_t generation; /* CMD_EXPIRE: links lent before the last one go back as they come free */
  struct pool *next;
  uint32_t sessions;  /* sessions that name it, until they are freed */
  uint8_t closing;    /* JavaScript closed it: links go back as they come free, freed once unused */
  uint8_t dead;       /* unused and closed: reported gone after this round, touched no more by the thread */
  struct pool *next_dead;
  /* JS thread: the thread reported it gone (commands naming it are refused); closePool was called. */
  uint8_t gone, close_asked;
  struct command *free_command; /* CMD_FREE_POOL, allocated by closePool: the report's answer cannot fail */
  uint32_t refs;                /* the JavaScript handle's and the thread's (atomic): the last frees it */
} pool;

typedef enum { CMD_START, CMD_RETIRE, CMD_TERMINATE, CMD_RELEASE, CMD_STOP, CMD_LEND, CMD_RECLAIM, CMD_DRAIN, CMD_FAIL_WANT, CMD_HAND_BACK_WAITER, CMD_LISTEN, CMD_UNLISTEN, CMD_LEARN, CMD_FORGET, CMD_EXPIRE, CMD_CLOSE_POOL, CMD_FREE_POOL } command_kind;

typedef struct command {
  command_kind kind;
  session *session;
  char *bytes;
  size_t length;
  /* CMD_LEND: the thread's duplicate of a server connection's descriptor, its id and lifetime left (ms, 0: none);
     CMD_LISTEN, CMD_UNLISTEN: the listener (its duplicate of the listening socket in fd); CMD_LEARN, CMD_FORGET: the
     learned login's id in server_id, its listener */
  int fd;
  double server_id, lifetime_ms;
  /* CMD_LEND (count: --max-prepared-statements; bytes: the statements the connection holds, NUL-terminated names, oldest first),
     CMD_RECLAIM (count), CMD_DRAIN (on), CMD_FAIL_WANT (bytes: the ErrorResponse), CMD_HAND_BACK_WAITER */
  pool *pool;
  struct listener *listener;
  uint32_t count;
  char why[200]; /* CMD_FAIL_WANT: SQLSTATE, space, message (the end report's detail) */
  struct command *next;
} command;

/* What JavaScript hears besides a session's end (one queue with the ends, so in order). */
typedef enum { REPORT_END, REPORT_WANT, REPORT_RETURNED, REPORT_PARAMETER, REPORT_ACCEPTED, REPORT_LOGIN, REPORT_POOL_GONE, REPORT_BRIEF } report_kind;

typedef struct report {
  report_kind kind;
  session *session;
  end_reason reason;
  uint8_t explained;
  char detail[200];
  /* REPORT_ACCEPTED, REPORT_LOGIN: the listener that accepted the client. */
  struct listener *listener;
  /* REPORT_WANT, REPORT_RETURNED, REPORT_POOL_GONE: the pool; REPORT_RETURNED and END_HANDED_BACK: the link's server and its status. */
  double pool_id, server_id;
  struct pool *pool; /* REPORT_POOL_GONE */
  uint8_t status, broken;
  /* END_HANDED_BACK, REPORT_ACCEPTED: the client's descriptor and the bytes it sent that were not forwarded
     (REPORT_LOGIN: the cancel key; the detail holds the client's address, and pool_id the learned login's id;
     REPORT_BRIEF: the clients' counters added up, COUNTERS doubles, length the number of clients, pool_id as for REPORT_LOGIN). */
  int fd;
  char local[INET6_ADDRSTRLEN + 8]; /* REPORT_LOGIN: the proxy's end of the connection, "" if unknown (flush_reports) */
  /* END_HANDED_BACK: those bytes; REPORT_PARAMETER: the ParameterStatus body. */
  char *bytes;
  size_t length;
  /* END_HANDED_BACK, REPORT_RETURNED: the statements the link holds (NUL-terminated names, oldest first; NULL: unchanged);
     END_HANDED_BACK: the client's (its name NUL, a big-endian uint32 length, the Parse body after the name). */
  char *link_statements, *client_statements;
  size_t link_statements_len, client_statements_len;
  uint8_t has_link_statements;
  struct report *next; /* the next of the same batch (post) */
} report;

typedef struct {
  int epoll_fd;
  int wake_fd;
  pthread_t thread;
  pthread_mutex_t lock;
  command *head, *tail;
  /* Under lock: the wake descriptor was written for the queued commands (one write wakes the thread for all of them). */
  uint8_t wake_pending;
  napi_threadsafe_function on_end;
  napi_threadsafe_function on_parameter; /* NULL when JavaScript did not ask */
  napi_ref on_pooled;                    /* pooled sessions' other reports; NULL when JavaScript did not ask */
  size_t live; /* started sessions whose end JavaScript has not seen; JS thread only */
  char *server_lost;
  size_t server_lost_len;
  /* The thread's own state. */
  session *sessions;
  pool *pools;
  pool *dead_pools; /* closed pools that nothing names: reported gone after this round */
  int64_t next_park_check;
  session *queued, *queued_tail;
  session *freed;
  server_link *dead_links; /* closed this round, freed after it (an event of the round may still name one) */
  /* Ended sessions in the order they ended, which is also the order of their deadlines. */
  session *closing, *closing_tail;
  /* Native logins (see "native logins"): the listening socket the thread accepts on, connections
     whose startup packet is being read (oldest first), the logins JavaScript taught it, and the
     figures it shares with JavaScript (LOGIN_*). */
  struct listener *listeners; /* one per proxy of the process; freed with the forwarder */
  struct pending *pending, *pending_tail, *dead_pending;
  struct learned *learned;
  double next_native_id;
  uint8_t random_stock[4096]; /* cancel keys of native logins */
  size_t random_left;
  /* Reports not handed to JavaScript yet (post), oldest first, and since when the oldest waits (µs, monotonic). */
  struct report *outbox, *outbox_tail;
  int64_t outbox_since;
  uint64_t batches; /* outboxes handed to JavaScript so far */
  int64_t report_window_us; /* REPORT_WINDOW_US, or BRIEF_REPORT_WINDOW_US once a brief listener listens */
  /* Rewritten frames on their way (prepared statements), reused. */
  char *scratch;
  size_t scratch_len, scratch_cap;
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

/* Appends to a buffer, growing it to what it must hold but at least `floor`; 0 without memory. */
static int append(char **buffer, size_t *end, size_t *cap, const char *bytes, size_t length, size_t floor) {
  if (*cap - *end < length) {
    size_t grown_cap = *end + length < floor ? floor : *end + length;
    char *grown = realloc(*buffer, grown_cap);
    if (!grown) return 0;
    *buffer = grown;
    *cap = grown_cap;
  }
  memcpy(*buffer + *end, bytes, length);
  *end += length;
  return 1;
}

static int keep(side *sd, const char *bytes, size_t length) {
  if (length == 0) return 1;
  if (sd->out_start > 0 && sd->out_start == sd->out_end) sd->out_start = sd->out_end = 0;
  if (sd->out_cap - sd->out_end < length && sd->out_start > 0) {
    size_t pending = sd->out_end - sd->out_start;
    memmove(sd->out, sd->out + sd->out_start, pending);
    sd->out_start = 0;
    sd->out_end = pending;
  }
  return append(&sd->out, &sd->out_end, &sd->out_cap, bytes, length, CHUNK);
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

/*
 * How long the report of a native login, or of its end, may wait for other reports, so that
 * JavaScript takes them together: they are bookkeeping (the client has its welcome, or is gone;
 * --max-client-conn counts the native logins and ends not reported yet from the shared figures,
 * LOGIN_*), and with a connection per transaction (pgbench -C) a wake-up of Node's thread for each
 * cost more than the JavaScript it runs (bench/README.md, Pooling, -C with native logins).
 */
#define REPORT_WINDOW_US 1000
/*
 * The same once a brief listener listens (no line logged per client, fold_brief): long enough for a
 * connection per transaction to end before its login is reported, so that most such clients are
 * only counted (at 8 pgbench -C clients on 2 cores, 65 % of them fold in 5 ms, 88 % in 20 ms).
 */
#define BRIEF_REPORT_WINDOW_US 20000

static void free_report(report *r) {
  free(r->bytes);
  free(r->link_statements);
  free(r->client_statements);
  free(r);
}

static void free_reports(report *r) {
  while (r) {
    report *next = r->next;
    if (r->fd >= 0) close(r->fd);
    free_report(r);
    r = next;
  }
}

static int64_t monotonic_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static void format_address(const struct sockaddr_storage *address, char *into, size_t size);

/*
 * A native login's report, as it goes out: the proxy's end of the client's connection (SHOW CLIENTS'
 * local_addr), read only now, so that a brief client (fold_brief) costs no system call for it.
 */
static void add_local_address(report *r) {
  struct sockaddr_storage local;
  socklen_t length = sizeof local;
  if (r->session->client.fd >= 0 && getsockname(r->session->client.fd, (struct sockaddr *)&local, &length) == 0) {
    format_address(&local, r->local, sizeof r->local);
  }
}

/* Hands the outbox to JavaScript (one call of the thread-safe function for the batch, in order). */
static void flush_reports(forwarder *f) {
  report *batch = f->outbox;
  if (!batch) return;
  for (report *r = batch; r; r = r->next) {
    if (r->kind == REPORT_LOGIN) add_local_address(r);
  }
  f->outbox = f->outbox_tail = NULL;
  f->batches++;
  if (napi_call_threadsafe_function(f->on_end, batch, napi_tsfn_nonblocking) != napi_ok) free_reports(batch);
}

static void count_native_end(session *s, end_reason reason);
static int fold_brief(forwarder *f, report *end);

/*
 * Reports go out in order, in batches: a native login and a counted end within the report window
 * (run()), any other at once, with those before it (so JavaScript always hears of a login before
 * anything else of its session, or a cancel request that names it).
 */
static void post(forwarder *f, report *r) {
  if (r->kind == REPORT_END && fold_brief(f, r)) return;
  r->next = NULL;
  if (f->outbox_tail) f->outbox_tail->next = r;
  else {
    f->outbox = r;
    f->outbox_since = monotonic_us();
  }
  f->outbox_tail = r;
  int waits = r->kind == REPORT_LOGIN || (r->kind == REPORT_END && r->session && r->session->end_counted);
  if (!waits) flush_reports(f);
}

/* The outbox's wait: flushed when its time is up; else the ms until then (-1: nothing waits). */
static int flush_reports_due(forwarder *f) {
  if (!f->outbox) return -1;
  int64_t left = f->outbox_since + f->report_window_us - monotonic_us();
  if (left <= 0) {
    flush_reports(f);
    return -1;
  }
  return (int)((left + 999) / 1000);
}

static report *new_report(report_kind kind, session *s) {
  report *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->kind = kind;
  r->session = s;
  r->fd = -1;
  return r;
}

static void post_report(forwarder *f, session *s, end_reason reason, int explained, const char *detail) {
  report *r = new_report(REPORT_END, s);
  if (!r) return; /* JavaScript never hears of it: the session leaks, nothing worse */
  r->reason = reason;
  r->explained = (uint8_t)explained;
  if (detail) snprintf(r->detail, sizeof r->detail, "%s", detail);
  post(f, r);
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

static void free_if_unused(forwarder *f, struct pool *p);

static void maybe_free(forwarder *f, session *s) {
  if (s->freed || !s->released || s->client.fd >= 0 || s->server.fd >= 0 || s->queued || s->closing) return;
  s->freed = 1;
  if (s->pooled) {
    s->pool->sessions--;
    free_if_unused(f, s->pool);
  }
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

/* A pooled session's server has answered everything it was sent, and has nothing more to take. */
static int server_quiet(const session *s) {
  return s->outstanding == 0 && s->reply_count == 0 && at_boundary(&s->from_server) && !has_out(&s->server);
}

static void leave_pool(forwarder *f, session *s, int server_failed);

/*
 * Decides a session's end: what each side is sent before it is closed. The counters are final at
 * this point; the report goes out after the first attempt to send those last bytes.
 */
static void end_session(forwarder *f, session *s, end_reason reason, int explained, const char *detail,
                        close_mode client_mode, const char *to_client, size_t to_client_len,
                        close_mode server_mode, const char *to_server, size_t to_server_len) {
  s->ended = 1;
  count_native_end(s, reason);
  s->deadline = now_ms(CLOCK_MONOTONIC) + LINGER_MS;
  /* A pooled session's server connection is the pool's: it is settled there, never sent anything. */
  if (s->pooled) leave_pool(f, s, reason == END_SERVER_CLOSED || reason == END_SERVER_PROTOCOL || reason == END_INTERNAL);
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

/*
 * A whole ParameterStatus body (name NUL value NUL). A relayed session's search_path is kept for
 * JavaScript; a pooled session's parameters all go to JavaScript, in order with the session's other
 * reports: they are the client's values and its server connection's, which the pool compares.
 */
static void parameter_read(forwarder *f, scanner *sc, session *s) {
  static const char NAME[] = "search_path";
  const char *body = sc->capture;
  uint32_t length = sc->captured;
  if (s->pooled) {
    report *r = f ? new_report(REPORT_PARAMETER, s) : NULL;
    if (r) {
      r->bytes = sc->capture;
      r->length = length;
      r->server_id = s->link ? s->link->server_id : 0;
      sc->capture = NULL;
      post(f, r);
    }
    /* Its server connection's parameters changed (a SET inside a function): JavaScript's to settle. */
    s->handing = 1;
  } else if (length > sizeof NAME && memcmp(body, NAME, sizeof NAME) == 0 && body[length - 1] == 0) {
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
static long scan(forwarder *f, scanner *sc, const uint8_t *bytes, size_t size, session *s, int from_client,
                 uint8_t *bad_type, int32_t *bad_length, int *counted) {
  size_t offset = 0;
  while (offset < size) {
    if (sc->remaining > 0) {
      size_t take = size - offset < sc->remaining ? size - offset : sc->remaining;
      if (sc->status_next) {
        sc->status_next = 0;
        s->server_status = bytes[offset];
        s->ready_seen = 1;
        if (s->outstanding > 0) s->outstanding--;
      }
      if (sc->capture) {
        memcpy(sc->capture + sc->captured, bytes + offset, take);
        sc->captured += (uint32_t)take;
      }
      sc->remaining -= (uint32_t)take;
      offset += take;
      if (sc->remaining == 0 && sc->capture) parameter_read(f, sc, s);
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
      if (type == TYPE_READY_FOR_QUERY && length == 5 && s->pooled) sc->status_next = 1;
      if (type == TYPE_PARAMETER_STATUS && length > 4 && length - 4 <= MAX_PARAMETER_BODY) {
        sc->capture = malloc((size_t)length - 4); /* without memory the report is skipped, the bytes still go */
        sc->captured = 0;
      }
    }
  }
  return -1;
}

static int pooled_server_ready(forwarder *f, session *s);
static int pooled_from_client(forwarder *f, session *s, const char *bytes, size_t length);
static int rewrite_to_client(forwarder *f, session *s, const char *bytes, size_t length);

/* Bytes read from one side: looked at, counted, passed on. Returns 0 if the session ended. */
static int deliver(forwarder *f, session *s, int from_client, const char *bytes, size_t length) {
  uint8_t bad_type = 0;
  int32_t bad_length = 0;
  int counted = 0;
  if (!from_client) {
    s->bytes_out += length;
    publish(s, BYTES_OUT, (double)s->bytes_out);
    if (scan(f, &s->from_server, (const uint8_t *)bytes, length, s, 0, &bad_type, &bad_length, &counted) != -1) {
      char type[8], detail[120];
      describe_type(type, sizeof type, bad_type);
      snprintf(detail, sizeof detail, "invalid length %d for message type %s", bad_length, type);
      end_session(f, s, END_SERVER_PROTOCOL, 0, detail, CLOSE_NOW, NULL, 0, CLOSE_NOW, NULL, 0);
      return 0;
    }
    if (s->search_path) report_search_path(f, s);
    if (s->tracking ? !rewrite_to_client(f, s, bytes, length) : !send_or_keep(f, s, &s->client, bytes, length)) return 0;
    if (s->pooled && s->ready_seen && at_boundary(&s->from_server)) return pooled_server_ready(f, s);
    return 1;
  }
  if (s->pooled) return pooled_from_client(f, s, bytes, length);
  if (s->retire && at_boundary(&s->from_client)) {
    /* The message that just began is not forwarded: the client is told its version is gone. */
    end_session(f, s, END_RETIRED, 0, NULL, client_mode(s), s->retire, s->retire_len, CLOSE_AFTER, TERMINATE_MESSAGE,
                sizeof TERMINATE_MESSAGE);
    return 0;
  }
  s->bytes_in += length;
  publish(s, BYTES_IN, (double)s->bytes_in);
  long bad = scan(f, &s->from_client, (const uint8_t *)bytes, length, s, 1, &bad_type, &bad_length, &counted);
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

/* Whether a side may be read now: the other keeps up and, pooled, the client's bytes may be held. */
static int may_read(const session *s, const side *from, const side *to) {
  if (has_out(to)) return 0;
  return !s->pooled || from != &s->client || (!s->handing && s->held_len < HOLD_LIMIT);
}

/* Reads one side and passes it on while the other side keeps up. Returns 0 if the session ended. */
static int relay(forwarder *f, session *s, side *from, side *to, int *more) {
  int from_client = from == &s->client;
  for (int turn = 0; from->readable && may_read(s, from, to); turn++) {
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

/* ---- pooled sessions --------------------------------------------------------------------- */
/*
 * A pooled session (transaction mode) starts with the client alone. Its messages are held until a
 * request is whole (up to a Sync, a Query or a Flush) and checked: only what the thread can keep the
 * books for stays here (statements and portals, named ones with the bookkeeping of "prepared
 * statements", queries that cannot pin the client to a connection, COPY data).
 * A whole request takes a link of the session's pool: a parked one, or the next one that comes
 * free, in the order the sessions asked; when the pool has fewer links than waiting sessions, the
 * thread asks JavaScript for one more (REPORT_WANT) and JavaScript's pool lends one (CMD_LEND: a
 * duplicate of its descriptor, Node's reads stopped). The held requests go out, and everything is
 * forwarded both ways until a ReadyForQuery leaves the connection idle with nothing outstanding;
 * then the link goes to the next waiting session or is parked. So once the pool has its links a
 * transaction costs JavaScript nothing, as in PgBouncer. Links go back to JavaScript
 * (REPORT_RETURNED) when parked longer than PARK_IDLE_MS, past their lifetime, broken, or asked
 * back (CMD_RECLAIM: JavaScript's own clients wait; CMD_DRAIN: a pause, a retired version).
 *
 * Anything else (a query that may SET or LISTEN or lock for the session or DEALLOCATE, a function
 * call, a message too long to hold, a client with too many statements) hands the client back to JavaScript at the
 * next moment nothing is outstanding on the server: the session ends here with END_HANDED_BACK,
 * the client's descriptor and the bytes not yet forwarded, and JavaScript forwards it from then on,
 * with the server connection it holds at that moment, if any. So the thread never forwards a
 * message whose effect the proxy must know, and JavaScript takes over between two requests.
 */

static void enqueue_again(forwarder *f, session *s);
static void pump(forwarder *f, session *s);

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint32_t read_length(const uint8_t *at) {
  return ((uint32_t)at[0] << 24) | ((uint32_t)at[1] << 16) | ((uint32_t)at[2] << 8) | at[3];
}

static int hold(session *s, const char *bytes, size_t length) {
  return append(&s->held, &s->held_len, &s->held_cap, bytes, length, 1024);
}

/* Drops held[0 .. length) (sent); an empty hold gives its memory back, as idle sessions hold none. */
static void unhold(session *s, size_t length) {
  s->held_len -= length;
  s->scan_at -= length;
  s->ready_len -= length;
  if (s->held_len == 0) {
    free(s->held);
    s->held = NULL;
    s->held_cap = 0;
  } else {
    memmove(s->held, s->held + length, s->held_len);
  }
}

static int identifier_byte(uint8_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '$' || c >= 0x80;
}

/* `word` (lower case) at text[i], in any case; `whole`: not inside a longer identifier. */
static int word_at(const uint8_t *text, size_t length, size_t i, const char *word, int whole) {
  size_t n = strlen(word);
  if (length - i < n) return 0;
  for (size_t k = 0; k < n; k++) {
    uint8_t c = text[i + k];
    if (c >= 'A' && c <= 'Z') c = (uint8_t)(c + 32);
    if (c != (uint8_t)word[k]) return 0;
  }
  if (!whole) return 1;
  return (i == 0 || !identifier_byte(text[i - 1])) && (i + n == length || !identifier_byte(text[i + n]));
}

/* Words that may pin a client anywhere in a statement; `whole`: not inside a longer identifier. */
static const struct {
  const char *word;
  int whole;
} PIN_WORDS[] = {
    {"listen", 1}, {"prepare", 1}, {"pg_temp", 0}, {"hold", 1}, {"temp", 1}, {"temporary", 1}, {"advisory_lock", 0}, {"set_config", 0},
    /* DEALLOCATE forgets prepared statements: Node keeps what the connection holds up to date (pooled.ts). */
    {"deallocate", 1},
};

/*
 * Whether query text might pin its client or change a setting the proxy tracks: the words that
 * pinning.ts's prefilter looks for, here as whole words where that is enough. A yes only means
 * JavaScript looks (with PostgreSQL's own parser); a no must be right.
 */
static int may_pin(const uint8_t *text, size_t length) {
  const uint8_t *nul = memchr(text, 0, length);
  if (nul) length = (size_t)(nul - text);
  int statement_start = 1;
  for (size_t i = 0; i < length; i++) {
    uint8_t c = text[i];
    if (c == ';') {
      statement_start = 1;
      continue;
    }
    if (statement_start) {
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') continue;
      if (c == '-' && i + 1 < length && text[i + 1] == '-') {
        while (i < length && text[i] != '\n') i++;
        continue;
      }
      if (c == '/' && i + 1 < length && text[i + 1] == '*') {
        i += 2;
        while (i + 1 < length && !(text[i] == '*' && text[i + 1] == '/')) i++;
        i++;
        continue;
      }
      statement_start = 0;
      if (word_at(text, length, i, "set", 1) || word_at(text, length, i, "reset", 1) || word_at(text, length, i, "discard", 1)) return 1;
    }
    uint8_t lower = c | 0x20;
    for (size_t w = 0; w < sizeof PIN_WORDS / sizeof PIN_WORDS[0]; w++) {
      if (lower == (uint8_t)PIN_WORDS[w].word[0] && word_at(text, length, i, PIN_WORDS[w].word, PIN_WORDS[w].whole)) return 1;
    }
  }
  return 0;
}

/* ---- prepared statements ----------------------------------------------------------------- */
/*
 * Named statements in transaction mode, exactly as pool/prepared.ts keeps them in Node (read it
 * first: this is the same bookkeeping over the same frames). A client's statement gets the server
 * name tandem_ + sha1 of its Parse body after the name, so identical statements of different
 * clients share one server prepare; each link knows the names its connection holds (an LRU bounded
 * by --max-prepared-statements); a request is rewritten when it goes out on a link: names swapped, a
 * Parse injected where the connection lacks the statement, a Close injected for the one evicted. The
 * replies each message waits for are queued, so that the replies to what the proxy injected are
 * dropped and those it gives itself (a Parse of a statement the connection holds, a Close) are
 * inserted, in order, however deep the pipeline. A session rewrites from its first named statement
 * on; before that, and for clients that never name one, bytes pass as they are.
 *
 * The link's names travel with it (lend, REPORT_RETURNED, a hand-back), and the client's
 * statements go to JavaScript with a hand-back, so that the two never disagree about what a
 * connection holds.
 */

/* NAMEDATALEN: no name the server keeps is longer. */
#define STATEMENT_NAME_MAX 64
#define SERVER_NAME_PREFIX "tandem_"
#define SERVER_NAME_LEN 47 /* the prefix and 40 hex digits */
/*
 * A client with this many statements, or this many bytes of them, goes back to JavaScript at its
 * next named Parse (Node keeps any number): the thread's memory per client stays bounded.
 */
#define MAX_CLIENT_STATEMENTS 256
#define MAX_CLIENT_STATEMENT_BYTES (1 << 20)

typedef struct link_statement {
  char name[STATEMENT_NAME_MAX];
  uint8_t length;
  uint64_t used;
} link_statement;

typedef struct client_statement {
  char *name; /* the client's, NUL-terminated */
  size_t name_len;
  /* The client's Parse under the server name (whole frame), injected wherever it is missing. */
  char *parse;
  size_t parse_len;
  uint8_t in_map; /* still the client's (a Close takes it out; a skipped Close puts it back) */
  uint32_t refs;  /* replies that name it */
  struct client_statement *next;
} client_statement;

/* The server name: right after the Parse frame's header. */
#define STATEMENT_SERVER_NAME(st) ((st)->parse + 5)

/* What each reply-producing message waits for (Reply in prepared.ts). */
typedef enum {
  REPLY_PARSE,
  REPLY_INJECTED_PARSE,
  REPLY_ANSWERED_PARSE,
  REPLY_ANSWERED_CLOSE,
  REPLY_DUPLICATE_PARSE,
  REPLY_BIND,
  REPLY_DESCRIBE_STATEMENT,
  REPLY_DESCRIBE_PORTAL,
  REPLY_EXECUTE,
  REPLY_CLOSE,
  REPLY_INJECTED_CLOSE,
  REPLY_SYNC,
  REPLY_QUERY,
  REPLY_NONE,
} reply_kind;

static const char *const REPLY_NAMES[] = {"Parse", "injected Parse", "answered Parse", "answered Close", "Parse of a name in use", "Bind", "Describe",
                                          "Describe", "Execute", "Close", "injected Close", "Sync", "Query", "nothing"};

typedef struct pending_reply {
  uint8_t kind;
  uint8_t server_name_len;
  char server_name[STATEMENT_NAME_MAX]; /* PARSE, INJECTED_PARSE, INJECTED_CLOSE */
  client_statement *statement;          /* PARSE (named), ANSWERED_PARSE, ANSWERED_CLOSE (when the client had it) */
  char *error;                          /* DUPLICATE_PARSE: the client's ErrorResponse */
  size_t error_len;
} pending_reply;

/* What the end of a server frame does to the queue. */
enum { FRAME_NOTHING, FRAME_POP, FRAME_SKIP };

static int scratch_add(forwarder *f, const void *bytes, size_t length) {
  return append(&f->scratch, &f->scratch_len, &f->scratch_cap, bytes, length, 4096);
}

static void write_be32(char *at, uint32_t value) {
  at[0] = (char)(value >> 24);
  at[1] = (char)(value >> 16);
  at[2] = (char)(value >> 8);
  at[3] = (char)value;
}

/* A frame's header (type, length of `body_len` bytes of body) into the scratch buffer. */
static int scratch_header(forwarder *f, uint8_t type, size_t body_len) {
  char header[5];
  header[0] = (char)type;
  write_be32(header + 1, (uint32_t)(body_len + 4));
  return scratch_add(f, header, 5);
}

/* ---- a link's names ---- */

static int link_find(const server_link *l, const char *name, size_t length) {
  for (uint32_t i = 0; i < l->statement_count; i++) {
    const link_statement *st = &l->statements[i];
    if (st->length == length && memcmp(st->name, name, length) == 0) return (int)i;
  }
  return -1;
}

static void link_touch(server_link *l, int i) {
  l->statements[i].used = ++l->statement_tick;
}

static int link_add(server_link *l, const char *name, size_t length) {
  if (length >= STATEMENT_NAME_MAX) return 1; /* the server truncates such a name: not ours */
  if (l->statement_count == l->statement_alloc) {
    uint32_t alloc = l->statement_alloc ? l->statement_alloc * 2 : 16;
    link_statement *grown = realloc(l->statements, alloc * sizeof *grown);
    if (!grown) return 0;
    l->statements = grown;
    l->statement_alloc = alloc;
  }
  link_statement *st = &l->statements[l->statement_count++];
  memcpy(st->name, name, length);
  st->length = (uint8_t)length;
  st->used = ++l->statement_tick;
  return 1;
}

static void link_delete(server_link *l, int i) {
  l->statements[i] = l->statements[--l->statement_count];
}

static int link_oldest(const server_link *l) {
  int oldest = -1;
  for (uint32_t i = 0; i < l->statement_count; i++) {
    if (oldest < 0 || l->statements[i].used < l->statements[oldest].used) oldest = (int)i;
  }
  return oldest;
}

/* JavaScript's names for a connection it lends (NUL-terminated, oldest first). */
static int link_import(server_link *l, const char *bytes, size_t length) {
  size_t at = 0;
  while (at < length) {
    const char *end = memchr(bytes + at, 0, length - at);
    if (!end) break;
    if (!link_add(l, bytes + at, (size_t)(end - (bytes + at)))) return 0;
    at = (size_t)(end - bytes) + 1;
  }
  return 1;
}

static int by_use(const void *a, const void *b) {
  uint64_t x = (*(link_statement *const *)a)->used, y = (*(link_statement *const *)b)->used;
  return x < y ? -1 : x > y;
}

/* The link's names for JavaScript, oldest first, into the report (has_link_statements: 0 without memory, and JavaScript forgets them all). */
static void link_export(const server_link *l, report *r) {
  r->has_link_statements = 1;
  if (l->statement_count == 0) return;
  link_statement **order = malloc(l->statement_count * sizeof *order);
  char *bytes = malloc((size_t)l->statement_count * STATEMENT_NAME_MAX);
  if (!order || !bytes) {
    free(order);
    free(bytes);
    r->has_link_statements = 2; /* unknown: JavaScript must assume nothing (and close it) */
    return;
  }
  for (uint32_t i = 0; i < l->statement_count; i++) order[i] = &l->statements[i];
  qsort(order, l->statement_count, sizeof *order, by_use);
  size_t at = 0;
  for (uint32_t i = 0; i < l->statement_count; i++) {
    memcpy(bytes + at, order[i]->name, order[i]->length);
    at += order[i]->length;
    bytes[at++] = 0;
  }
  free(order);
  r->link_statements = bytes;
  r->link_statements_len = at;
}

/* ---- a client's statements ---- */

static client_statement *client_find(session *s, const char *name, size_t length) {
  for (client_statement *st = s->statements; st; st = st->next) {
    if (st->name_len == length && memcmp(st->name, name, length) == 0) return st;
  }
  return NULL;
}

static void statement_release(client_statement *st) {
  if (st->in_map || st->refs > 0) return;
  free(st->name);
  free(st->parse);
  free(st);
}

static void client_insert(session *s, client_statement *st) {
  st->in_map = 1;
  st->next = s->statements;
  s->statements = st;
  s->statement_count++;
  s->statement_bytes += st->name_len + st->parse_len;
  publish(s, PREPARED, s->statement_count);
}

static void client_remove(session *s, client_statement *st) {
  client_statement **at = &s->statements;
  while (*at && *at != st) at = &(*at)->next;
  if (!*at) return;
  *at = st->next;
  st->next = NULL;
  st->in_map = 0;
  s->statement_count--;
  s->statement_bytes -= st->name_len + st->parse_len;
  publish(s, PREPARED, s->statement_count);
  statement_release(st);
}

/* A statement from a Parse body: `name` the client's, `rest` what follows it (query, types). NULL without memory. */
static client_statement *statement_new(const char *name, size_t name_len, const char *rest, size_t rest_len) {
  client_statement *st = calloc(1, sizeof *st);
  if (!st) return NULL;
  st->name = malloc(name_len + 1);
  st->parse_len = 5 + SERVER_NAME_LEN + 1 + rest_len;
  st->parse = malloc(st->parse_len);
  if (!st->name || !st->parse) {
    free(st->name);
    free(st->parse);
    free(st);
    return NULL;
  }
  memcpy(st->name, name, name_len);
  st->name[name_len] = 0;
  st->name_len = name_len;
  char *frame = st->parse;
  frame[0] = 'P';
  write_be32(frame + 1, (uint32_t)(st->parse_len - 1));
  memcpy(frame + 5, SERVER_NAME_PREFIX, sizeof SERVER_NAME_PREFIX - 1);
  sha1_hex((const uint8_t *)rest, rest_len, frame + 5 + sizeof SERVER_NAME_PREFIX - 1);
  frame[5 + SERVER_NAME_LEN] = 0;
  memcpy(frame + 5 + SERVER_NAME_LEN + 1, rest, rest_len);
  return st;
}

static void free_statements(session *s) {
  /* Those only replies still name go with their last reply; then the client's own. */
  for (uint32_t i = 0; i < s->reply_count; i++) {
    pending_reply *r = &s->replies[(s->reply_head + i) % s->reply_cap];
    free(r->error);
    if (r->statement) {
      r->statement->refs--;
      statement_release(r->statement);
    }
  }
  for (client_statement *st = s->statements, *next; st; st = next) {
    next = st->next;
    st->in_map = 0;
    st->next = NULL;
    statement_release(st);
  }
  free(s->replies);
  s->replies = NULL;
  s->statements = NULL;
  s->reply_count = s->reply_cap = s->reply_head = 0;
  s->statement_count = 0;
  s->statement_bytes = 0;
}

/* The client's statements for JavaScript (a hand-back): name NUL, uint32 length, the Parse body after the name. */
static int client_export(const session *s, report *r) {
  size_t total = 0;
  for (const client_statement *st = s->statements; st; st = st->next) total += st->name_len + 1 + 4 + (st->parse_len - 5 - SERVER_NAME_LEN - 1);
  if (total == 0) return 1;
  char *bytes = malloc(total);
  if (!bytes) return 0;
  size_t at = 0;
  for (const client_statement *st = s->statements; st; st = st->next) {
    size_t rest_len = st->parse_len - 5 - SERVER_NAME_LEN - 1;
    memcpy(bytes + at, st->name, st->name_len + 1);
    at += st->name_len + 1;
    write_be32(bytes + at, (uint32_t)rest_len);
    at += 4;
    memcpy(bytes + at, st->parse + 5 + SERVER_NAME_LEN + 1, rest_len);
    at += rest_len;
  }
  r->client_statements = bytes;
  r->client_statements_len = total;
  return 1;
}

/* ---- the replies a link owes ---- */

static reply_kind reply_head(const session *s) {
  return s->reply_count > 0 ? (reply_kind)s->replies[s->reply_head].kind : REPLY_NONE;
}

static void reply_pop(session *s) {
  pending_reply *r = &s->replies[s->reply_head];
  free(r->error);
  r->error = NULL;
  if (r->statement) {
    client_statement *st = r->statement;
    r->statement = NULL;
    st->refs--;
    statement_release(st);
  }
  s->reply_head = (s->reply_head + 1) % s->reply_cap;
  s->reply_count--;
}

static const char PARSE_COMPLETE[5] = {'1', 0, 0, 0, 4};
static const char CLOSE_COMPLETE[5] = {'3', 0, 0, 0, 4};

/*
 * Sends the replies the proxy gives itself once everything before them has been answered: to the
 * scratch buffer while the server's frames are being rewritten, else straight to the client's
 * queue (only between two server frames, or the end of the current one sends them). 0 without memory.
 */
static int answer_what_is_due(forwarder *f, session *s, int to_scratch) {
  if (!to_scratch && (s->frame_header_len > 0 || s->frame_remaining > 0)) return 1;
  while (s->reply_count > 0) {
    reply_kind kind = reply_head(s);
    const char *answer = kind == REPLY_ANSWERED_PARSE ? PARSE_COMPLETE : kind == REPLY_ANSWERED_CLOSE ? CLOSE_COMPLETE : NULL;
    if (!answer) return 1;
    if (!(to_scratch ? scratch_add(f, answer, 5) : keep(&s->client, answer, 5))) return 0;
    reply_pop(s);
  }
  return 1;
}

/* Queues the reply a message sent now waits for. 0 without memory. */
static int expect(forwarder *f, session *s, reply_kind kind, const char *server_name, size_t server_name_len, client_statement *st) {
  if (s->reply_count == s->reply_cap) {
    uint32_t cap = s->reply_cap ? s->reply_cap * 2 : 16;
    pending_reply *grown = malloc(cap * sizeof *grown);
    if (!grown) return 0;
    for (uint32_t i = 0; i < s->reply_count; i++) grown[i] = s->replies[(s->reply_head + i) % s->reply_cap];
    free(s->replies);
    s->replies = grown;
    s->reply_cap = cap;
    s->reply_head = 0;
  }
  pending_reply *r = &s->replies[(s->reply_head + s->reply_count) % s->reply_cap];
  memset(r, 0, sizeof *r);
  r->kind = (uint8_t)kind;
  if (server_name) {
    memcpy(r->server_name, server_name, server_name_len);
    r->server_name_len = (uint8_t)server_name_len;
  }
  if (st) {
    r->statement = st;
    st->refs++;
  }
  s->reply_count++;
  return s->reply_count > 1 || answer_what_is_due(f, s, 0);
}

/* Undoes what a message that the server skipped (an earlier error in its pipeline) was counted for. */
static void reply_undo(session *s, pending_reply *r) {
  server_link *l = s->link;
  client_statement *st = r->statement;
  switch ((reply_kind)r->kind) {
    case REPLY_PARSE:
    case REPLY_INJECTED_PARSE: {
      int i = l ? link_find(l, r->server_name, r->server_name_len) : -1;
      if (i >= 0) link_delete(l, i);
      if (r->kind == REPLY_PARSE && st && st->in_map) client_remove(s, st);
      break;
    }
    case REPLY_ANSWERED_PARSE:
      if (st && st->in_map) client_remove(s, st);
      break;
    case REPLY_ANSWERED_CLOSE:
      if (st && !st->in_map && !client_find(s, st->name, st->name_len)) client_insert(s, st);
      break;
    case REPLY_INJECTED_CLOSE:
      /* The server skipped the Close: the statement is still there. */
      if (l && link_find(l, r->server_name, r->server_name_len) < 0) link_add(l, r->server_name, r->server_name_len);
      break;
    default:
      break;
  }
}

/* The failed message and everything after it up to the Sync never happened. */
static void skip_to_sync(session *s) {
  while (s->reply_count > 0 && reply_head(s) != REPLY_SYNC) {
    reply_undo(s, &s->replies[s->reply_head]);
    reply_pop(s);
  }
  if (s->reply_count == 0) s->skipping = 1;
}

/* ---- the client's messages, rewritten for the held link ---- */

/* Makes room for one more statement on the link (a Close of the least recently used), then prepares `st`. */
static int prepare_on_link(forwarder *f, session *s, client_statement *st, reply_kind kind, client_statement *named) {
  server_link *l = s->link;
  while (l->statement_count >= l->capacity) {
    int oldest = link_oldest(l);
    link_statement evicted = l->statements[oldest];
    link_delete(l, oldest);
    if (!expect(f, s, REPLY_INJECTED_CLOSE, evicted.name, evicted.length, NULL) || !scratch_header(f, 'C', 1 + evicted.length + 1) ||
        !scratch_add(f, "S", 1) || !scratch_add(f, evicted.name, evicted.length) || !scratch_add(f, "", 1)) {
      return 0;
    }
  }
  /* Counted as prepared from now on, so the rest of the pipeline does not prepare it again; an error takes it back out (reply_undo). */
  if (!link_add(l, STATEMENT_SERVER_NAME(st), SERVER_NAME_LEN)) return 0;
  return expect(f, s, kind, STATEMENT_SERVER_NAME(st), SERVER_NAME_LEN, named) && scratch_add(f, st->parse, st->parse_len);
}

static int ensure_prepared(forwarder *f, session *s, client_statement *st) {
  int i = link_find(s->link, STATEMENT_SERVER_NAME(st), SERVER_NAME_LEN);
  if (i >= 0) {
    link_touch(s->link, i);
    return 1;
  }
  return prepare_on_link(f, s, st, REPLY_INJECTED_PARSE, NULL);
}

/* The message as the client sent it, waiting for `kind`. */
static int pass_on(forwarder *f, session *s, reply_kind kind, const char *frame, size_t length) {
  return (kind == REPLY_NONE || expect(f, s, kind, NULL, 0, NULL)) && scratch_add(f, frame, length);
}

/* The ErrorResponse PostgreSQL sends for a Parse of a name in use (prepared.ts builds the same). */
static char *duplicate_error(const char *name, size_t *length) {
  static const char BEFORE[] = "SERROR\0VERROR\0C42P05\0Mprepared statement \"";
  static const char AFTER[] = "\" already exists";
  size_t name_len = strlen(name);
  size_t body = sizeof BEFORE - 1 + name_len + sizeof AFTER - 1 + 2;
  char *frame = malloc(5 + body);
  if (!frame) return NULL;
  frame[0] = 'E';
  write_be32(frame + 1, (uint32_t)(body + 4));
  char *at = frame + 5;
  memcpy(at, BEFORE, sizeof BEFORE - 1);
  at += sizeof BEFORE - 1;
  memcpy(at, name, name_len);
  at += name_len;
  memcpy(at, AFTER, sizeof AFTER - 1);
  at += sizeof AFTER - 1;
  at[0] = 0;
  at[1] = 0;
  *length = 5 + body;
  return frame;
}

/* One whole client message (frame: header and body) rewritten into the scratch buffer. 0 without memory. */
static int rewrite_message(forwarder *f, session *s, const char *frame, size_t length) {
  uint8_t type = (uint8_t)frame[0];
  const char *body = frame + 5;
  size_t body_len = length - 5;
  if (s->skipping && type != 'S') {
    if (type == 'H') s->open_request = 1;
    return pass_on(f, s, REPLY_NONE, frame, length); /* the server ignores it; so does the bookkeeping */
  }
  switch (type) {
    case 'P': {
      const char *name_end = memchr(body, 0, body_len);
      if (!name_end || name_end == body) return pass_on(f, s, REPLY_PARSE, frame, length);
      size_t name_len = (size_t)(name_end - body);
      client_statement *existing = client_find(s, body, name_len);
      if (existing) {
        if (!ensure_prepared(f, s, existing)) return 0;
        /* The server gets a Parse that fails the same way (so that it skips to the Sync), the client the error with its name. */
        size_t error_len;
        char *error = duplicate_error(existing->name, &error_len);
        if (!error || !expect(f, s, REPLY_DUPLICATE_PARSE, NULL, 0, NULL)) {
          free(error);
          return 0;
        }
        pending_reply *r = &s->replies[(s->reply_head + s->reply_count - 1) % s->reply_cap];
        r->error = error;
        r->error_len = error_len;
        return scratch_add(f, existing->parse, existing->parse_len);
      }
      client_statement *st = statement_new(body, name_len, name_end + 1, body_len - name_len - 1);
      if (!st) return 0;
      client_insert(s, st);
      int i = link_find(s->link, STATEMENT_SERVER_NAME(st), SERVER_NAME_LEN);
      if (i >= 0) {
        link_touch(s->link, i);
        return expect(f, s, REPLY_ANSWERED_PARSE, NULL, 0, st);
      }
      return prepare_on_link(f, s, st, REPLY_PARSE, st);
    }
    case 'B': {
      const char *portal_end = memchr(body, 0, body_len);
      const char *name = portal_end ? portal_end + 1 : NULL;
      const char *name_end = name ? memchr(name, 0, (size_t)(body + body_len - name)) : NULL;
      client_statement *st = name_end && name_end > name ? client_find(s, name, (size_t)(name_end - name)) : NULL;
      /* Unnamed, or a name the client never prepared: the server says what PostgreSQL says (26000). */
      if (!st) return pass_on(f, s, REPLY_BIND, frame, length);
      if (!ensure_prepared(f, s, st)) return 0;
      size_t portal_len = (size_t)(name - body);
      size_t rest_len = (size_t)(body + body_len - (name_end + 1));
      return expect(f, s, REPLY_BIND, NULL, 0, NULL) && scratch_header(f, 'B', portal_len + SERVER_NAME_LEN + 1 + rest_len) &&
             scratch_add(f, body, portal_len) && scratch_add(f, STATEMENT_SERVER_NAME(st), SERVER_NAME_LEN + 1) && scratch_add(f, name_end + 1, rest_len);
    }
    case 'D': {
      if (body_len < 1 || body[0] != 'S') return pass_on(f, s, REPLY_DESCRIBE_PORTAL, frame, length);
      const char *name_end = memchr(body + 1, 0, body_len - 1);
      client_statement *st = name_end && name_end > body + 1 ? client_find(s, body + 1, (size_t)(name_end - body - 1)) : NULL;
      if (!st) return pass_on(f, s, REPLY_DESCRIBE_STATEMENT, frame, length);
      return ensure_prepared(f, s, st) && expect(f, s, REPLY_DESCRIBE_STATEMENT, NULL, 0, NULL) && scratch_header(f, 'D', 1 + SERVER_NAME_LEN + 1) &&
             scratch_add(f, "S", 1) && scratch_add(f, STATEMENT_SERVER_NAME(st), SERVER_NAME_LEN + 1);
    }
    case 'C': {
      const char *name_end = body_len >= 2 && body[0] == 'S' ? memchr(body + 1, 0, body_len - 1) : NULL;
      if (!name_end || name_end == body + 1) return pass_on(f, s, REPLY_CLOSE, frame, length);
      /* The server's statement may serve other clients: it stays until the LRU evicts it. Closing a name that does not exist is no error in PostgreSQL either. */
      client_statement *st = client_find(s, body + 1, (size_t)(name_end - body - 1));
      if (!expect(f, s, REPLY_ANSWERED_CLOSE, NULL, 0, st)) return 0;
      if (st) client_remove(s, st);
      return 1;
    }
    case 'E':
      return pass_on(f, s, REPLY_EXECUTE, frame, length);
    case 'S':
      s->skipping = 0;
      s->open_request = 0;
      return pass_on(f, s, REPLY_SYNC, frame, length);
    case 'Q':
    case 'F':
      s->open_request = 0;
      return pass_on(f, s, REPLY_QUERY, frame, length);
    case 'H':
      s->open_request = 1;
      return pass_on(f, s, REPLY_NONE, frame, length);
    default: /* COPY data, done, failed */
      return pass_on(f, s, REPLY_NONE, frame, length);
  }
}

/* ---- the server's replies, rewritten for the client ---- */

static void server_out_of_order(forwarder *f, session *s, const char *what) {
  char detail[160];
  snprintf(detail, sizeof detail, "the server sent %s while the proxy expected the reply to %s", what, REPLY_NAMES[reply_head(s)]);
  end_session(f, s, END_SERVER_PROTOCOL, 0, detail, CLOSE_NOW, NULL, 0, CLOSE_NOW, NULL, 0);
}

/* A server frame begins: whether it goes to the client, what its end does. Returns 0 if the session ended. */
static int frame_start(forwarder *f, session *s, uint8_t type) {
  reply_kind head = reply_head(s);
  s->frame_drop = 0;
  s->frame_end_action = FRAME_NOTHING;
  switch (type) {
    case '1': /* ParseComplete */
      if (head != REPLY_PARSE && head != REPLY_INJECTED_PARSE) return server_out_of_order(f, s, "ParseComplete"), 0;
      s->frame_drop = head == REPLY_INJECTED_PARSE;
      s->frame_end_action = FRAME_POP;
      break;
    case '2': /* BindComplete */
      if (head != REPLY_BIND) return server_out_of_order(f, s, "BindComplete"), 0;
      s->frame_end_action = FRAME_POP;
      break;
    case '3': /* CloseComplete */
      if (head != REPLY_CLOSE && head != REPLY_INJECTED_CLOSE) return server_out_of_order(f, s, "CloseComplete"), 0;
      s->frame_drop = head == REPLY_INJECTED_CLOSE;
      s->frame_end_action = FRAME_POP;
      break;
    case 'T': /* RowDescription */
    case 'n': /* NoData: also part of a simple query's results; it completes only a Describe */
      if (head == REPLY_DESCRIBE_STATEMENT || head == REPLY_DESCRIBE_PORTAL) s->frame_end_action = FRAME_POP;
      break;
    case 'C': /* CommandComplete */
    case 'I': /* EmptyQueryResponse */
    case 's': /* PortalSuspended */
      if (head == REPLY_EXECUTE) s->frame_end_action = FRAME_POP;
      break;
    case TYPE_READY_FOR_QUERY:
      if (head != REPLY_SYNC && head != REPLY_QUERY) return server_out_of_order(f, s, "ReadyForQuery"), 0;
      s->frame_end_action = FRAME_POP;
      break;
    case TYPE_ERROR:
      if (head == REPLY_DUPLICATE_PARSE) {
        pending_reply *r = &s->replies[s->reply_head];
        if (!scratch_add(f, r->error, r->error_len)) return internal_failure(f, s, "out of memory"), 0;
        s->frame_drop = 1;
      }
      /* A simple query's error still ends at its ReadyForQuery; an extended-protocol error makes the server skip to the next Sync. */
      if (head != REPLY_NONE && head != REPLY_QUERY && head != REPLY_SYNC) s->frame_end_action = FRAME_SKIP;
      break;
    default: /* ParameterDescription, DataRow, notices, notifications, ParameterStatus, COPY… */
      break;
  }
  return 1;
}

static int frame_end(forwarder *f, session *s) {
  if (s->frame_end_action == FRAME_POP) reply_pop(s);
  else if (s->frame_end_action == FRAME_SKIP) skip_to_sync(s);
  s->frame_end_action = FRAME_NOTHING;
  s->frame_drop = 0;
  if (!answer_what_is_due(f, s, 1)) return internal_failure(f, s, "out of memory"), 0;
  return 1;
}

/* Server bytes for a session that rewrites: replies dropped and inserted, the rest to the client. Returns 0 if the session ended. */
static int rewrite_to_client(forwarder *f, session *s, const char *bytes, size_t length) {
  f->scratch_len = 0;
  size_t at = 0;
  while (at < length) {
    if (s->frame_remaining > 0) {
      size_t take = length - at < s->frame_remaining ? length - at : s->frame_remaining;
      if (!s->frame_drop && !scratch_add(f, bytes + at, take)) return internal_failure(f, s, "out of memory"), 0;
      at += take;
      s->frame_remaining -= (uint32_t)take;
      if (s->frame_remaining == 0 && !frame_end(f, s)) return 0;
      continue;
    }
    s->frame_header[s->frame_header_len++] = (uint8_t)bytes[at++];
    if (s->frame_header_len < 5) continue;
    s->frame_header_len = 0;
    uint8_t type = s->frame_header[0];
    /* scan() refused lengths out of range before this runs. */
    s->frame_remaining = read_length(s->frame_header + 1) - 4;
    if (!frame_start(f, s, type)) return 0;
    if (!s->frame_drop && !scratch_add(f, s->frame_header, 5)) return internal_failure(f, s, "out of memory"), 0;
    if (s->frame_remaining == 0 && !frame_end(f, s)) return 0;
  }
  return send_or_keep(f, s, &s->client, f->scratch, f->scratch_len);
}

/*
 * The whole requests held, rewritten for the held link, to the server. From the first named
 * statement on, all of a session's traffic is rewritten (the replies to what came before must be
 * counted too), so a session starts doing so only when its link owes it nothing.
 * Returns -1 if the session ended, 0 if the requests must wait for the link to be quiet, else 1.
 */
static int rewrite_ready(forwarder *f, session *s) {
  if (!s->tracking) {
    if (s->outstanding > 0 || !at_boundary(&s->from_server)) return 0;
    s->tracking = 1;
    s->frame_header_len = 0;
    s->frame_remaining = 0;
  }
  f->scratch_len = 0;
  size_t at = 0;
  while (at < s->ready_len) {
    size_t frame_len = 1 + read_length((const uint8_t *)s->held + at + 1);
    if (!rewrite_message(f, s, s->held + at, frame_len)) {
      internal_failure(f, s, "out of memory");
      return -1;
    }
    at += frame_len;
  }
  return 1;
}

/* Clients that reach this many statements are handed back at their next new one (MAX_CLIENT_*). */
static int statements_full(const session *s) {
  return s->statement_count >= MAX_CLIENT_STATEMENTS || s->statement_bytes >= MAX_CLIENT_STATEMENT_BYTES;
}

typedef enum {
  MESSAGE_PART,       /* part of a request: held until its end */
  MESSAGE_REQUEST_END, /* a Sync or a Query: the request is whole */
  MESSAGE_FLUSH,      /* a Flush: what came before goes out, the link stays the session's until the Sync */
  MESSAGE_COPY,       /* COPY data, done or failed: goes straight to the lent connection */
  MESSAGE_TERMINATE,
  MESSAGE_JAVASCRIPT, /* needs the proxy's bookkeeping: the client goes back to JavaScript */
} message_class;

/* `*named`: the message names a statement (see "prepared statements"). */
static message_class classify(uint8_t type, const uint8_t *body, size_t length, int *named) {
  *named = 0;
  switch (type) {
    case 'Q':
      return may_pin(body, length) ? MESSAGE_JAVASCRIPT : MESSAGE_REQUEST_END;
    case 'S':
      return MESSAGE_REQUEST_END;
    case 'H':
      return MESSAGE_FLUSH;
    case 'P': { /* a statement whose query cannot pin the client */
      const uint8_t *name_end = memchr(body, 0, length);
      if (!name_end) return MESSAGE_JAVASCRIPT;
      size_t query = (size_t)(name_end - body) + 1;
      if (may_pin(body + query, length - query)) return MESSAGE_JAVASCRIPT;
      *named = name_end > body;
      return MESSAGE_PART;
    }
    case 'B': { /* any portal, of any statement */
      const uint8_t *portal_end = memchr(body, 0, length);
      size_t statement = portal_end ? (size_t)(portal_end - body) + 1 : length;
      if (statement >= length || !memchr(body + statement, 0, length - statement)) return MESSAGE_JAVASCRIPT;
      *named = body[statement] != 0;
      return MESSAGE_PART;
    }
    case 'D':
    case 'C': /* a portal or a statement */
      if (length < 2 || (body[0] != 'P' && body[0] != 'S') || !memchr(body + 1, 0, length - 1)) return MESSAGE_JAVASCRIPT;
      *named = body[0] == 'S' && body[1] != 0;
      return MESSAGE_PART;
    case 'E':
      return MESSAGE_PART;
    case 'd':
    case 'c':
    case 'f':
      return MESSAGE_COPY;
    case TYPE_TERMINATE:
      return MESSAGE_TERMINATE;
    default:
      return MESSAGE_JAVASCRIPT;
  }
}

/* Sends the whole requests held to the held link. Returns 0 if the session ended. */
static int forward_ready(forwarder *f, session *s) {
  if (s->ready_len == 0) return 1;
  if (s->tracking || s->named_held) {
    int rewritten = rewrite_ready(f, s);
    if (rewritten < 0) return 0;
    if (rewritten == 0) return 1; /* sent when the link owes nothing (pooled_server_ready) */
  }
  if (s->outstanding == 0) s->request_started_us = now_us();
  s->outstanding += s->ready_requests;
  s->ready_requests = 0;
  size_t length = s->ready_len;
  if (!send_or_keep(f, s, &s->server, s->tracking ? f->scratch : s->held, s->tracking ? f->scratch_len : length)) return 0;
  unhold(s, length);
  /* The replies the proxy gave itself. */
  return !s->tracking || flush(f, s, &s->client);
}

static void publish_pool(pool *p) {
  double value = p->waiting_count;
  __atomic_store(&p->figures[POOL_WAITING], &value, __ATOMIC_RELAXED);
  value = p->parked_count;
  __atomic_store(&p->figures[POOL_PARKED], &value, __ATOMIC_RELAXED);
}

/* A session took a link after waiting `waited_us` (0: one was parked). */
static void observe_wait(pool *p, double waited_us) {
  uint32_t bucket = 0;
  while (bucket < p->bound_count && waited_us > p->bounds[bucket]) bucket++;
  double *figures = p->figures;
  double value = figures[POOL_WAIT_COUNT] + 1;
  __atomic_store(&figures[POOL_WAIT_COUNT], &value, __ATOMIC_RELAXED);
  value = figures[POOL_WAIT_SUM_US] + waited_us;
  __atomic_store(&figures[POOL_WAIT_SUM_US], &value, __ATOMIC_RELAXED);
  value = figures[POOL_WAIT_BUCKETS + bucket] + 1;
  __atomic_store(&figures[POOL_WAIT_BUCKETS + bucket], &value, __ATOMIC_RELAXED);
}

/* Parks a link for the pool's next session. */
static void park(pool *p, server_link *l) {
  l->parked_at = now_ms(CLOCK_MONOTONIC);
  l->next_parked = p->parked;
  p->parked = l;
  p->parked_count++;
  publish_pool(p);
}

/* Takes the parked link `*at` points to (a place in the pool's parked list) out of the list. */
static server_link *unpark_at(pool *p, server_link **at) {
  server_link *l = *at;
  *at = l->next_parked;
  p->parked_count--;
  publish_pool(p);
  return l;
}

/* Takes the most recently parked link, if any. */
static server_link *unpark(pool *p) {
  return p->parked ? unpark_at(p, &p->parked) : NULL;
}

static void publish_figures(session *s) {
  publish(s, TRANSACTIONS, s->transactions);
  publish(s, HELD_US, s->held_us);
  publish(s, WAITED_US, s->waited_us);
  publish(s, REQUESTS, s->requests);
  publish(s, REQUEST_US, s->request_us);
}

/* Closes the thread's duplicate; the struct is freed after this round of events. */
static void close_link(forwarder *f, server_link *l) {
  epoll_ctl(f->epoll_fd, EPOLL_CTL_DEL, l->fd, NULL);
  close(l->fd);
  l->fd = -1;
  l->pool->links--;
  l->next_parked = f->dead_links;
  f->dead_links = l;
}

/* Tells JavaScript a connection of the pool is back: rolled back there when left in a transaction, closed when broken. */
/* `l`: the link, whose statements JavaScript takes over (NULL: one the thread never used). */
static void report_returned(forwarder *f, pool *p, server_link *l, double server_id, uint8_t status, uint8_t broken) {
  report *r = new_report(REPORT_RETURNED, NULL);
  if (!r) return;
  r->pool_id = p->id;
  r->server_id = server_id;
  r->status = status;
  r->broken = broken;
  if (l) {
    link_export(l, r);
    /* Without memory for the names, nobody could say what the connection holds: it is closed. */
    if (r->has_link_statements == 2) r->broken = 1;
  }
  post(f, r);
}

/* The link goes back to JavaScript's pool. */
static void return_link(forwarder *f, server_link *l, uint8_t status, uint8_t broken) {
  close_link(f, l);
  report_returned(f, l->pool, l, l->server_id, status, broken);
  free_if_unused(f, l->pool);
}

static void take_link(forwarder *f, session *s, server_link *l);
static void stop_waiting(session *s);

/* A link whose transaction ended cleanly: to JavaScript if asked for, else the next waiting session, else parked. */
static void free_link(forwarder *f, server_link *l) {
  pool *p = l->pool;
  l->user = NULL;
  int64_t now = now_ms(CLOCK_MONOTONIC);
  if (p->returning || p->give_back > 0 || l->generation != p->generation || (l->expires_at && now >= l->expires_at)) {
    if (p->give_back > 0 && !p->returning) p->give_back--;
    return_link(f, l, 'I', 0);
    return;
  }
  session *next = p->waiting;
  if (next) {
    stop_waiting(next);
    take_link(f, next, l);
    return;
  }
  if (p->closing) return_link(f, l, 'I', 0);
  else park(p, l);
}

/* The session holds the link for its next transaction. */
static void take_link(forwarder *f, session *s, server_link *l) {
  l->user = s;
  s->link = l;
  side *server = &s->server;
  server->fd = l->fd;
  server->readable = server->hangup = server->fin_sent = 0;
  server->writable = 1;
  free(s->from_server.capture);
  memset(&s->from_server, 0, sizeof s->from_server);
  s->last_server_type = 0;
  s->outstanding = 0;
  s->server_status = 'I';
  s->frame_header_len = 0;
  s->frame_remaining = 0;
  s->open_request = 0;
  int64_t now = now_us();
  double waited = 0;
  if (s->wait_started_us) {
    waited = (double)(now - s->wait_started_us);
    s->waited_us += waited;
    s->wait_started_us = 0;
    publish(s, WAITING_SINCE, 0);
  }
  observe_wait(s->pool, waited);
  s->taken_us = now;
  s->transactions += 1;
  publish(s, SERVER_ID, l->server_id);
  publish_figures(s);
  /* The server may have answered and the client sent more while it waited: a turn for both. */
  if (forward_ready(f, s)) enqueue_again(f, s);
}

/* The session lets go of its link (which stays open); NULL if it held none. */
static server_link *drop_link(session *s) {
  server_link *l = s->link;
  if (!l) return NULL;
  s->link = NULL;
  s->server.fd = -1;
  s->server.readable = s->server.hangup = 0;
  drop_out(&s->server);
  s->held_us += (double)(now_us() - s->taken_us);
  publish(s, SERVER_ID, 0);
  publish_figures(s);
  return l;
}

/* Out of the pool's queue (its wait_started_us stays: take_link counts the wait). */
static void stop_waiting(session *s) {
  if (!s->wanting) return;
  pool *p = s->pool;
  session *previous = NULL;
  for (session *at = p->waiting; at; previous = at, at = at->next_waiting) {
    if (at != s) continue;
    if (previous) previous->next_waiting = at->next_waiting;
    else p->waiting = at->next_waiting;
    if (p->waiting_tail == s) p->waiting_tail = previous;
    p->waiting_count--;
    publish_pool(p);
    break;
  }
  s->wanting = 0;
  publish(s, WAITING_SINCE, 0);
}

/*
 * An ending session's link: reused when it is between transactions, else back to JavaScript
 * (rolled back there, or closed when mid-answer or when the server side is what failed).
 */
static void leave_pool(forwarder *f, session *s, int server_failed) {
  stop_waiting(s);
  /* Mid-request (after a Flush, before its Sync), the connection is in no state for another client. */
  int quiet = server_quiet(s) && !server_failed && !s->server.hangup && !s->open_request;
  uint8_t status = s->server_status;
  server_link *l = drop_link(s);
  if (!l) return;
  if (quiet && status == 'I') free_link(f, l);
  else return_link(f, l, status, !quiet);
}

/*
 * Asks JavaScript for one more link while sessions wait and no request is under way: one at a
 * time, so that the pool grows only while its sessions really wait (a link that comes free first
 * serves them), and no request lingers in JavaScript's pool once they are served.
 */
static void ask(forwarder *f, pool *p) {
  if (p->asked > 0 || p->waiting_count == 0) return;
  report *r = new_report(REPORT_WANT, NULL);
  if (!r) return; /* the next link that comes free serves them */
  p->asked++;
  r->pool_id = p->id;
  post(f, r);
}

/* A whole request: the session takes a parked link, or waits for one (asking JavaScript for another). */
static void want(forwarder *f, session *s) {
  pool *p = s->pool;
  server_link *l = unpark(p);
  if (l) {
    take_link(f, s, l);
    return;
  }
  s->wanting = 1;
  s->next_waiting = NULL;
  if (p->waiting_tail) p->waiting_tail->next_waiting = s;
  else p->waiting = s;
  p->waiting_tail = s;
  p->waiting_count++;
  publish_pool(p);
  s->wait_started_us = now_us();
  publish(s, WAITING_SINCE, (double)now_ms(CLOCK_REALTIME));
  ask(f, p);
}

/* JavaScript forwards the client from here on: the session ends without closing anything. */
static void hand_back(forwarder *f, session *s) {
  report *r = new_report(REPORT_END, s);
  if (!r) {
    internal_failure(f, s, "out of memory");
    return;
  }
  /* The client's statements go on in Node, and so do the names of the connection it holds. */
  if (!client_export(s, r) || (s->link && (link_export(s->link, r), r->has_link_statements == 2))) {
    free_report(r);
    internal_failure(f, s, "out of memory");
    return;
  }
  s->ended = 1;
  r->reason = END_HANDED_BACK;
  r->status = s->server_status;
  stop_waiting(s);
  server_link *l = drop_link(s);
  if (l) {
    /* The connection stays the client's: JavaScript's socket reads it from now on. */
    r->server_id = l->server_id;
    close_link(f, l);
  }
  epoll_ctl(f->epoll_fd, EPOLL_CTL_DEL, s->client.fd, NULL);
  r->fd = s->client.fd;
  s->client.fd = -1;
  drop_out(&s->client);
  r->bytes = s->held;
  r->length = s->held_len;
  s->held = NULL;
  s->held_len = s->held_cap = s->ready_len = s->scan_at = 0;
  post(f, r);
  maybe_free(f, s);
}

/* Hands the client back (with what it sent that was not forwarded) once the server has answered everything. */
static void hand_back_when_quiet(forwarder *f, session *s) {
  if (!s->handing || s->ended || s->wanting || has_out(&s->client)) return;
  if (s->link && !server_quiet(s)) return;
  hand_back(f, s);
}

/* Looks at the held messages not looked at yet. Returns 0 if the session ended. */
static int advance(forwarder *f, session *s) {
  while (!s->handing) {
    size_t at = s->scan_at;
    if (s->held_len - at < 5) break;
    const uint8_t *header = (const uint8_t *)s->held + at;
    uint32_t length = read_length(header + 1);
    if (length < 4 || length > MAX_MESSAGE_LENGTH) {
      char type[8], message[120], error[200];
      describe_type(type, sizeof type, header[0]);
      snprintf(message, sizeof message, "invalid length %d for message type %s", (int32_t)length, type);
      size_t error_len = protocol_error_message(error, sizeof error, message);
      end_with_error(f, s, END_CLIENT_PROTOCOL, message, error, error_len);
      return 0;
    }
    /* Too long to hold whole, or the request it belongs to is: JavaScript streams it. */
    if (length > HOLD_LIMIT || at + 1 + length - s->ready_len > HOLD_LIMIT) {
      s->handing = 1;
      break;
    }
    if (s->held_len - at < 1 + (size_t)length) break;
    /* A retired version's client is told so at its first message outside a transaction. */
    if (s->retire && at == 0 && !s->link && !s->wanting) {
      end_session(f, s, END_RETIRED, 0, NULL, client_mode(s), s->retire, s->retire_len, CLOSE_NOW, NULL, 0);
      return 0;
    }
    uint8_t type = header[0];
    int named;
    message_class kind = classify(type, header + 5, length - 4, &named);
    if (named) {
      /* A client with many statements already goes on in Node (MAX_CLIENT_*). */
      if (type == 'P' && statements_full(s)) kind = MESSAGE_JAVASCRIPT;
      else s->named_held = 1;
    }
    if ((kind == MESSAGE_PART || kind == MESSAGE_REQUEST_END) && (type == TYPE_QUERY || type == TYPE_EXECUTE)) {
      s->queries++;
      publish(s, QUERIES, (double)s->queries);
      publish(s, LAST_QUERY_AT, (double)now_ms(CLOCK_REALTIME));
    }
    switch (kind) {
      case MESSAGE_PART:
        break;
      case MESSAGE_REQUEST_END:
        s->ready_len = at + 1 + length;
        s->ready_requests++;
        break;
      case MESSAGE_FLUSH:
        /* The client waits for the replies so far (postgres.js describes a statement so before it binds): no ReadyForQuery
           ends them, so they are counted as a named statement's are (the rewriting's queue). */
        s->ready_len = at + 1 + length;
        s->named_held = 1;
        break;
      case MESSAGE_COPY:
        /* Only a COPY under way on a held link reads them; anything else is JavaScript's to judge. */
        if (!s->link || at != s->ready_len) {
          s->handing = 1;
          continue;
        }
        s->ready_len = at + 1 + length;
        break;
      case MESSAGE_TERMINATE:
        /* The client leaves: what it had not finished is dropped, its link is settled. Its socket is
           closed at once unless replies are still queued for it (as PgBouncer does: a client that sent
           Terminate reads nothing more, and a shutdown and a read until its end of stream cost three
           system calls and a wake-up per connection with a connection per transaction). */
        s->client_terminated = 1;
        end_session(f, s, END_CLIENT_CLOSED, 0, NULL, has_out(&s->client) ? CLOSE_AFTER : CLOSE_NOW, NULL, 0, CLOSE_NOW, NULL, 0);
        return 0;
      case MESSAGE_JAVASCRIPT:
        s->handing = 1;
        continue;
    }
    s->scan_at = at + 1 + length;
  }
  if (s->ready_len > 0) {
    if (s->link) {
      if (!forward_ready(f, s)) return 0;
    } else if (!s->wanting && !s->handing) {
      want(f, s);
      if (s->ended) return 0;
    }
  }
  hand_back_when_quiet(f, s);
  return !s->ended;
}

/* A ReadyForQuery went to the client and the server is between messages. Returns 0 if the session ended. */
static int pooled_server_ready(forwarder *f, session *s) {
  s->ready_seen = 0;
  if (s->outstanding > 0) return 1;
  s->requests += 1;
  s->request_us += (double)(now_us() - s->request_started_us);
  /* A client going back to JavaScript keeps its connection: what changed it (a parameter) is JavaScript's to settle. */
  if (s->server_status == 'I' && !has_out(&s->server) && s->ready_len == 0 && !s->handing && s->reply_count == 0 && !s->skipping && !s->open_request) {
    free_link(f, drop_link(s));
  } else {
    /* Requests that waited for the link to owe nothing (rewrite_ready) go now. */
    if (s->ready_len > 0 && s->link && !forward_ready(f, s)) return 0;
    publish_figures(s);
  }
  hand_back_when_quiet(f, s);
  return !s->ended;
}

/* Bytes from a pooled session's client: held, and looked at. Returns 0 if the session ended. */
static int pooled_from_client(forwarder *f, session *s, const char *bytes, size_t length) {
  s->bytes_in += length;
  publish(s, BYTES_IN, (double)s->bytes_in);
  if (!hold(s, bytes, length)) {
    internal_failure(f, s, "out of memory");
    return 0;
  }
  return advance(f, s);
}

/* An event on a link: its session's server side when lent; when parked, the server spoke or hung up. */
static void link_event(forwarder *f, server_link *l, uint32_t ev) {
  if (l->fd < 0) return;
  session *s = l->user;
  if (s) {
    side *sd = &s->server;
    if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) sd->hangup = 1;
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) sd->readable = 1;
    if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) sd->writable = 1;
    pump(f, s);
    return;
  }
  if (!(ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) return;
  /* A parked connection has nothing to say but a FATAL before it closes: JavaScript closes it. */
  pool *p = l->pool;
  server_link **at = &p->parked;
  while (*at && *at != l) at = &(*at)->next_parked;
  if (*at) unpark_at(p, at);
  return_link(f, l, 'I', 1);
}

/* Parked links idle longer than PARK_IDLE_MS, or past their lifetime, go back to JavaScript's pool. */
static void return_idle_links(forwarder *f) {
  int64_t now = now_ms(CLOCK_MONOTONIC);
  if (now < f->next_park_check) return;
  f->next_park_check = now + PARK_IDLE_MS / 2;
  for (pool *p = f->pools; p; p = p->next) {
    server_link **at = &p->parked;
    while (*at) {
      server_link *l = *at;
      if (now - l->parked_at >= PARK_IDLE_MS || (l->expires_at && now >= l->expires_at)) {
        return_link(f, unpark_at(p, at), 'I', 0);
      } else {
        at = &l->next_parked;
      }
    }
  }
}

static int has_parked_links(forwarder *f) {
  for (pool *p = f->pools; p; p = p->next) {
    if (p->parked) return 1;
  }
  return 0;
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
  if (s->pooled) {
    if (!relay(f, s, &s->client, &s->server, &more)) return;
    if (s->server.fd >= 0 && !relay(f, s, &s->server, &s->client, &more)) return;
    /* Sent what held the client back (the server's side, or the client's last answer). */
    hand_back_when_quiet(f, s);
    if (s->ended) return;
  } else {
    if (!relay(f, s, &s->client, &s->server, &more)) return;
    if (!relay(f, s, &s->server, &s->client, &more)) return;
  }
  if (more) enqueue_again(f, s);
}

/* ---- commands from JavaScript ------------------------------------------------------------ */

/* Adds a side to the thread's epoll; returns 0 (the session ended) if it cannot. */
static int watch_as(forwarder *f, session *s, side *sd, int op) {
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = sd};
  if (epoll_ctl(f->epoll_fd, op, sd->fd, &ev) == 0) return 1;
  char detail[200];
  errno_text(detail, sizeof detail, "epoll_ctl", errno);
  internal_failure(f, s, detail);
  return 0;
}

static int watch(forwarder *f, session *s, side *sd) {
  return watch_as(f, s, sd, EPOLL_CTL_ADD);
}

/* A descriptor JavaScript lent that the thread does not take: its pool has it back unused. */
static void return_unused(forwarder *f, pool *p, int fd, double server_id) {
  close(fd);
  report_returned(f, p, NULL, server_id, 'I', 0);
}

/* JavaScript lends a link to a pool that asked (REPORT_WANT). */
static void lend(forwarder *f, pool *p, int fd, double server_id, double lifetime_ms, uint32_t capacity, const char *statements, size_t statements_len) {
  if (p->asked > 0) p->asked--;
  if (p->waiting_count == 0 || p->returning) {
    /* Served meanwhile by a link that came free. */
    return_unused(f, p, fd, server_id);
    return;
  }
  if (!p->known) {
    p->known = 1;
    p->next = f->pools;
    f->pools = p;
  }
  server_link *l = calloc(1, sizeof *l);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET};
  if (l) {
    l->watch = WATCH_LINK;
    l->fd = fd;
    l->server_id = server_id;
    l->pool = p;
    if (lifetime_ms > 0) l->expires_at = now_ms(CLOCK_MONOTONIC) + (int64_t)lifetime_ms;
    l->capacity = capacity > 0 ? capacity : 200;
    l->generation = p->generation;
    ev.data.ptr = l;
  }
  if (!l || !link_import(l, statements, statements_len) || epoll_ctl(f->epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    if (l) free(l->statements);
    free(l);
    return_unused(f, p, fd, server_id);
    ask(f, p);
    return;
  }
  p->links++;
  free_link(f, l);
  ask(f, p);
}

/* JavaScript wants `count` links of the pool back (its own clients wait): parked ones now, others as they come free. */
static void reclaim(forwarder *f, pool *p, uint32_t count) {
  server_link *l;
  while (count > 0 && (l = unpark(p))) {
    return_link(f, l, 'I', 0);
    count--;
  }
  uint32_t lent = p->links;
  p->give_back = p->give_back + count < lent ? p->give_back + count : lent;
}

/* JavaScript's answer to a REPORT_WANT was no link: the session that waited longest is told why, if it waited `min_wait_ms`. */
static void fail_want(forwarder *f, pool *p, const char *error, size_t error_len, uint32_t min_wait_ms, const char *why) {
  if (p->asked > 0) p->asked--;
  session *s = p->waiting;
  if (s && (now_us() - s->wait_started_us) / 1000 >= (int64_t)min_wait_ms) end_with_error(f, s, END_POOL_ERROR, why, error, error_len);
  /* Those still waiting ask again. */
  ask(f, p);
}

/* JavaScript cannot lend this pool a link the thread can use: the session that waited longest goes back to Node. */
static void hand_back_waiter(forwarder *f, pool *p) {
  if (p->asked > 0) p->asked--;
  session *s = p->waiting;
  if (!s) return;
  stop_waiting(s);
  s->handing = 1;
  hand_back_when_quiet(f, s);
  ask(f, p);
}

/*
 * ---- closing a pool ----
 * JavaScript closes a pool it no longer wants (CMD_CLOSE_POOL: its version retired, or no session for
 * a while) and gives its clients a new one from then on. The thread stops logging clients in to it,
 * returns its parked links and the others as they come free, and serves its remaining sessions until
 * they end. Once no session, link or answer owed by JavaScript (asked) names it, it is off the thread's
 * lists and, after the round, reported gone (REPORT_POOL_GONE): JavaScript lets go of its figures and
 * answers with CMD_FREE_POOL, the last command naming it (commands run in order, so none is left
 * behind it). The memory goes when that command and the JavaScript handle are both done with it.
 */
static void release_pool(pool *p) {
  if (__atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) > 0) return;
  free(p->free_command);
  free(p);
}

static void forget_pool(forwarder *f, pool *p);

/* Every parked link of the pool goes back to JavaScript. */
static void return_parked(forwarder *f, pool *p) {
  server_link *l;
  while ((l = unpark(p))) return_link(f, l, 'I', 0);
}

static void close_pool(forwarder *f, pool *p) {
  p->closing = 1;
  forget_pool(f, p);
  return_parked(f, p);
  free_if_unused(f, p);
}

static void free_if_unused(forwarder *f, pool *p) {
  if (!p->closing || p->dead || p->sessions > 0 || p->links > 0 || p->asked > 0) return;
  p->dead = 1;
  if (p->known) {
    pool **at = &f->pools;
    while (*at != p) at = &(*at)->next;
    *at = p->next;
  }
  p->next_dead = f->dead_pools;
  f->dead_pools = p;
}

/* After the round: the dead pools are reported gone, and touched no more here (JavaScript may free them). */
static void report_dead_pools(forwarder *f) {
  while (f->dead_pools) {
    pool *p = f->dead_pools;
    f->dead_pools = p->next_dead;
    report *r = new_report(REPORT_POOL_GONE, NULL);
    if (!r) continue; /* JavaScript never hears: the pool stays allocated, as before pools were freed */
    r->pool = p;
    r->pool_id = p->id;
    post(f, r);
  }
}

static void start_session(forwarder *f, session *s) {
  if (s->pooled) s->pool->sessions++;
  s->next = f->sessions;
  if (f->sessions) f->sessions->prev = s;
  f->sessions = s;
  side *sides[2] = {&s->client, &s->server};
  for (int i = 0; i < (s->pooled ? 1 : 2); i++) {
    if (!watch(f, s, sides[i])) return;
  }
  if (s->pooled) {
    advance(f, s);
    return;
  }
  /* As the JavaScript path does: the server's bytes first, then the client's. */
  int alive = 1;
  if (s->initial_to_client_len > 0) alive = deliver(f, s, 0, s->initial_to_client, s->initial_to_client_len);
  if (alive && s->initial_to_server_len > 0) deliver(f, s, 1, s->initial_to_server, s->initial_to_server_len);
  free(s->initial_to_client);
  free(s->initial_to_server);
  s->initial_to_client = s->initial_to_server = NULL;
}

static void free_statements(session *s);

static void free_session(session *s) {
  free_statements(s);
  free(s->release);
  free(s->held);
  free(s->from_server.capture);
  free(s->search_path);
  free(s->retire);
  free(s->initial_to_client);
  free(s->initial_to_server);
  if (s->owns_counters) free(s->counters);
  drop_out(&s->client);
  drop_out(&s->server);
  free(s);
}

struct listener;
static void start_listening(forwarder *f, struct listener *l);
static void stop_listening(forwarder *f, struct listener *l);
static void learn(forwarder *f, command *c);
static void forget(forwarder *f, double id, struct listener *l);

/*
 * Runs queued commands; returns 1 when the thread is to stop. `woken`: the wake descriptor fired
 * (it is read, so that epoll stops reporting it); else this only takes what is queued, if anything.
 */
static int run_commands(forwarder *f, int woken) {
  uint64_t ignored;
  if (woken) {
    while (read(f->wake_fd, &ignored, sizeof ignored) < 0 && errno == EINTR) {}
  }
  pthread_mutex_lock(&f->lock);
  command *c = f->head;
  f->head = f->tail = NULL;
  f->wake_pending = 0;
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
      case CMD_LEND:
        lend(f, c->pool, c->fd, c->server_id, c->lifetime_ms, c->count, c->bytes, c->length);
        free_if_unused(f, c->pool);
        break;
      case CMD_RECLAIM:
        reclaim(f, c->pool, c->count);
        break;
      case CMD_DRAIN:
        c->pool->returning = c->count > 0;
        if (c->pool->returning) reclaim(f, c->pool, c->pool->links);
        else c->pool->give_back = 0;
        break;
      case CMD_FAIL_WANT:
        fail_want(f, c->pool, c->bytes, c->length, c->count, c->why);
        free_if_unused(f, c->pool);
        break;
      case CMD_EXPIRE:
        /* Every link lent so far goes back: parked ones now, the others as their transactions end. */
        c->pool->generation++;
        return_parked(f, c->pool);
        break;
      case CMD_HAND_BACK_WAITER:
        hand_back_waiter(f, c->pool);
        free_if_unused(f, c->pool);
        break;
      case CMD_CLOSE_POOL:
        close_pool(f, c->pool);
        break;
      case CMD_FREE_POOL:
        release_pool(c->pool);
        break;
      case CMD_LISTEN:
        start_listening(f, c->listener);
        break;
      case CMD_UNLISTEN:
        stop_listening(f, c->listener);
        break;
      case CMD_LEARN:
        learn(f, c);
        break;
      case CMD_FORGET:
        forget(f, c->server_id, c->listener);
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

/*
 * Puts a command on the thread's queue and, with `wake`, wakes it: one write of the wake descriptor
 * for all the commands queued before the thread takes them. Without `wake` (a release: it only frees
 * memory) the command waits for the thread's next round, whatever wakes it: a -C connection's release
 * then costs no system call on either side (bench/README.md, Pooling, -C with native logins).
 */
static void enqueue_waking(forwarder *f, command *c, int wake) {
  pthread_mutex_lock(&f->lock);
  if (f->tail) f->tail->next = c;
  else f->head = c;
  f->tail = c;
  int write_now = wake && !f->wake_pending;
  if (write_now) f->wake_pending = 1;
  pthread_mutex_unlock(&f->lock);
  uint64_t one = 1;
  if (write_now) {
    while (write(f->wake_fd, &one, sizeof one) < 0 && errno == EINTR) {}
  }
}

static void enqueue(forwarder *f, command *c) {
  enqueue_waking(f, c, 1);
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

/* ---- native logins ----------------------------------------------------------------------- */

/*
 * With --native-login (transaction mode, --auth-type trust): the thread accepts on the proxy's
 * listening socket itself, answers an SSLRequest with 'N' (the proxy has no TLS), reads the startup
 * packet and, when its bytes are exactly those of a login JavaScript made and taught it ("learned":
 * the same startup packet goes to the same pool with the same welcome while the version list stays
 * the same), writes that welcome with a cancel key of its own and ReadyForQuery in one write, and
 * forwards the client as a pooled session. So such a connection never enters JavaScript until it is
 * reported (REPORT_LOGIN, in a batch with the other reports of the round). Every other connection
 * goes to JavaScript with the bytes read so far (REPORT_ACCEPTED), which logs it in as before.
 */

/* A startup packet longer than this (options, many parameters) goes to JavaScript. */
#define STARTUP_LIMIT 2048
/* A connection without its whole startup packet by then goes to JavaScript (its login timeout). */
#define PENDING_WAIT_MS 1000
/* Connections accepted per round before other sockets get a turn (the listener is level-triggered). */
#define ACCEPTS_PER_TURN 64
/* After accept fails for want of descriptors or memory, the listener rests this long. */
#define ACCEPT_REST_MS 100

#define SSL_REQUEST_CODE 80877103
#define GSSENC_REQUEST_CODE 80877104
#define CANCEL_REQUEST_CODE 80877102

/* Why a connection went to JavaScript (LOGIN_FALLBACKS + reason; NativeLoginFallback in native.ts). */
enum { FALLBACK_UNLEARNED, FALLBACK_TLS, FALLBACK_GSSENC, FALLBACK_CANCEL, FALLBACK_INCOMPLETE, FALLBACK_TOO_LARGE, FALLBACK_MAX_CLIENT_CONN, FALLBACK_OTHER, FALLBACKS };

/*
 * Slots of the login figures (a Float64Array JavaScript owns): its admitted sessions and
 * --max-client-conn (JavaScript writes them), native logins so far (the thread), how many of them
 * JavaScript has seen (JavaScript: the difference is in flight), the same for their ends that the
 * thread counts (post: a native login's end, unless handed back or terminated by JavaScript, which
 * had let its place go already), and the fallbacks by reason (the thread).
 */
enum { LOGIN_JS_ADMITTED, LOGIN_MAX_CLIENTS, LOGIN_NATIVE_TOTAL, LOGIN_SEEN, LOGIN_NATIVE_ENDS, LOGIN_ENDS_SEEN, LOGIN_FALLBACKS, LOGIN_FIGURES = LOGIN_FALLBACKS + FALLBACKS };

/* A proxy's listening socket, which the thread accepts on (the process may run several proxies). */
typedef struct listener {
  uint8_t watch; /* WATCH_LISTENER */
  int fd;        /* -1 once no longer accepting */
  int64_t rest_until; /* ms, monotonic: accept failed for want of resources; 0: accepting */
  uint8_t tls_on;     /* the proxy has a certificate: SSLRequests are JavaScript's */
  uint8_t inherits;   /* the connections accepted from now on have the listening socket's options (start_listening) */
  uint8_t brief;      /* JavaScript wants no line per client: a native login that ends before it is reported is not (fold_brief) */
  double *figures;    /* LOGIN_*, a Float64Array JavaScript owns */
  double native_logins, native_ends;
  napi_ref figures_ref, on_login; /* JS thread */
  uint8_t unlistened;             /* JS thread */
  struct listener *next;
} listener;

typedef struct pending {
  uint8_t watch; /* WATCH_PENDING */
  int fd;
  listener *listener;
  int64_t deadline; /* ms, monotonic */
  char address[INET6_ADDRSTRLEN + 8];
  size_t length;
  char bytes[STARTUP_LIMIT];
  struct pending *prev, *next;
} pending;

typedef struct learned {
  double id;
  listener *listener; /* the proxy that taught it: only its clients are logged in with it */
  pool *pool;
  char *startup; /* the whole startup packet, length word included */
  size_t startup_len;
  char *welcome; /* AuthenticationOk and the ParameterStatus messages */
  size_t welcome_len;
  struct learned *next;
} learned;

/*
 * A native login's end that is not JavaScript's own termination (it let the place go itself) gives
 * its --max-client-conn place back here, before its client is closed, in its listener's figures; its
 * report may wait (post). JavaScript counts it seen by the same rule (NativeLogins.endSeen).
 */
static void count_native_end(session *s, end_reason reason) {
  struct listener *l = s->login_listener;
  if (!l || reason == END_TERMINATED || reason == END_HANDED_BACK) return;
  s->end_counted = 1;
  l->native_ends += 1;
  l->figures[LOGIN_NATIVE_ENDS] = l->native_ends;
}

/*
 * A native login whose end comes while its own login report still waits in the outbox (a connection
 * per transaction, `pgbench -C`): JavaScript hears of neither, only of the figures, added up in one
 * REPORT_BRIEF per learned login and batch, so that such a client costs the JS thread nothing of its
 * own. Only where the listener allows it (no line per client is logged) and for an end with nothing
 * to tell (the client closed or sent Terminate, without a socket error). Nothing can have named the
 * session yet: JavaScript did not know it, and any other report of it would have sent its login out.
 */
static int fold_brief(forwarder *f, report *end) {
  session *s = end->session;
  report *login = s ? s->login_report : NULL;
  if (!login || s->login_batch != f->batches || !s->login_listener || !s->login_listener->brief) return 0;
  if (end->reason != END_CLIENT_CLOSED || end->detail[0] || !s->end_counted) return 0;
  report *before = NULL, *brief = NULL;
  int found = 0;
  for (report *r = f->outbox, *previous = NULL; r; previous = r, r = r->next) {
    if (r == login) {
      found = 1;
      before = previous;
    } else if (r->kind == REPORT_BRIEF && r->listener == login->listener && r->pool_id == login->pool_id) {
      brief = r;
    }
  }
  if (!found) return 0;
  if (!brief) {
    double *sums = calloc(COUNTERS, sizeof(double));
    if (!sums) return 0;
    /* The login's report becomes the batch's brief report of its learned login. */
    free(login->bytes);
    login->bytes = (char *)sums;
    login->length = 0;
    login->kind = REPORT_BRIEF;
    login->session = NULL;
    brief = login;
  } else {
    if (before) before->next = login->next;
    else f->outbox = login->next;
    if (f->outbox_tail == login) f->outbox_tail = before;
    free_report(login);
  }
  double *sums = (double *)brief->bytes;
  static const int ADDED[] = {BYTES_IN, BYTES_OUT, QUERIES, TRANSACTIONS, HELD_US, WAITED_US, REQUESTS, REQUEST_US};
  for (size_t i = 0; i < sizeof ADDED / sizeof ADDED[0]; i++) sums[ADDED[i]] += s->counters[ADDED[i]];
  if (s->counters[LAST_QUERY_AT] > sums[LAST_QUERY_AT]) sums[LAST_QUERY_AT] = s->counters[LAST_QUERY_AT];
  brief->length += 1;
  s->login_report = NULL;
  s->owns_counters = 1;
  /* As if JavaScript had seen the end and released it. */
  s->released = 1;
  free_report(end);
  maybe_free(f, s);
  return 1;
}

static void count_fallback(pending *p, int reason) {
  p->listener->figures[LOGIN_FALLBACKS + reason] += 1;
}

/*
 * Off the list; freed after this round of events, which may still name it (fd -1: skipped). Out of
 * epoll too, unless the descriptor stays the thread's (a native login: its session's watch replaces
 * this one with EPOLL_CTL_MOD, one system call instead of a delete and an add).
 */
static void unlink_pending_watched(forwarder *f, pending *p, int keep_watch) {
  if (p->prev) p->prev->next = p->next;
  else f->pending = p->next;
  if (p->next) p->next->prev = p->prev;
  else f->pending_tail = p->prev;
  if (!keep_watch) epoll_ctl(f->epoll_fd, EPOLL_CTL_DEL, p->fd, NULL);
  p->fd = -1;
  p->next = f->dead_pending;
  f->dead_pending = p;
}

static void unlink_pending(forwarder *f, pending *p) {
  unlink_pending_watched(f, p, 0);
}

/* The connection goes to JavaScript as it is, with what it sent so far (an answered SSLRequest excluded). */
static void to_javascript(forwarder *f, pending *p, int reason) {
  int fd = p->fd;
  unlink_pending(f, p);
  count_fallback(p, reason);
  report *r = new_report(REPORT_ACCEPTED, NULL);
  if (r && p->length > 0) {
    r->bytes = malloc(p->length);
    if (r->bytes) memcpy(r->bytes, p->bytes, p->length);
    else {
      free(r);
      r = NULL;
    }
  }
  if (!r) {
    /* Nobody can take it: the client sees its connection close, as when a proxy is out of memory. */
    close(fd);
    return;
  }
  r->fd = fd;
  r->length = p->length;
  r->listener = p->listener;
  post(f, r);
}

/* "host:port" of an IPv4 or IPv6 socket address, as Node's remoteAddress and remotePort give them; "" for another family. */
static void format_address(const struct sockaddr_storage *address, char *into, size_t size) {
  char host[INET6_ADDRSTRLEN];
  into[0] = 0;
  if (address->ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)address;
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    snprintf(into, size, "%s:%u", host, ntohs(in->sin_port));
  } else if (address->ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)address;
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    snprintf(into, size, "%s:%u", host, ntohs(in6->sin6_port));
  }
}

static uint32_t read_be32(const char *at) {
  return read_length((const uint8_t *)at);
}

/* Eight random bytes for a cancel key (the process id and secret of BackendKeyData). */
static int random_key(forwarder *f, char *into) {
  if (f->random_left < 8) {
    ssize_t n = getrandom(f->random_stock, sizeof f->random_stock, GRND_NONBLOCK);
    if (n < (ssize_t)sizeof f->random_stock) return 0;
    f->random_left = sizeof f->random_stock;
  }
  memcpy(into, f->random_stock + sizeof f->random_stock - f->random_left, 8);
  f->random_left -= 8;
  return 1;
}

static learned *find_learned(forwarder *f, listener *l, const char *startup, size_t length) {
  for (learned *e = f->learned; e; e = e->next) {
    if (e->listener == l && e->startup_len == length && memcmp(e->startup, startup, length) == 0) return e;
  }
  return NULL;
}

/*
 * Logs the client in with what `e` taught: the session is made, reported, sent its welcome and
 * forwarded from its pool. Returns 0 (touching nothing) when it cannot: the caller hands it to JavaScript.
 */
static int log_in(forwarder *f, pending *p, learned *e, int *reason) {
  listener *l = p->listener;
  double *figures = l->figures;
  /* --max-client-conn: JavaScript's admitted sessions, and native logins it has not seen yet, less
     the ends of native logins it has not seen yet (their reports wait, post). */
  double ends_in_flight = l->native_ends - figures[LOGIN_ENDS_SEEN];
  if (figures[LOGIN_JS_ADMITTED] + (l->native_logins - figures[LOGIN_SEEN]) - ends_in_flight >= figures[LOGIN_MAX_CLIENTS]) {
    *reason = FALLBACK_MAX_CLIENT_CONN;
    return 0;
  }
  *reason = FALLBACK_OTHER;
  /* BackendKeyData and ReadyForQuery after the taught welcome. */
  char tail[13 + 6] = {'K', 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, TYPE_READY_FOR_QUERY, 0, 0, 0, 5, 'I'};
  if (!random_key(f, tail + 5)) return 0;
  session *s = calloc(1, sizeof *s);
  report *r = new_report(REPORT_LOGIN, NULL);
  char *welcome = malloc(e->welcome_len + sizeof tail);
  if (s) {
    s->counters = calloc(COUNTERS, sizeof(double));
    s->release = calloc(1, sizeof *s->release);
  }
  size_t rest = p->length - e->startup_len;
  if (!s || !r || !welcome || !s->counters || !s->release || (r->bytes = malloc(8)) == NULL || (rest > 0 && !hold(s, p->bytes + e->startup_len, rest))) {
    if (s) {
      free(s->counters);
      free_session(s);
    }
    if (r) free(r->bytes);
    free(r);
    free(welcome);
    return 0;
  }
  s->client.session = s->server.session = s;
  s->server.fd = -1;
  s->client.writable = s->server.writable = 1;
  s->release->kind = CMD_RELEASE;
  s->release->session = s;
  s->pooled = 1;
  s->pool = e->pool;
  s->pool->sessions++;
  s->server_status = 'I';
  /* Ids of their own (negative), apart from JavaScript's session ids. */
  s->id = --f->next_native_id;
  s->login_listener = l;
  s->client.fd = p->fd;
  unlink_pending_watched(f, p, 1);
  l->native_logins += 1;
  figures[LOGIN_NATIVE_TOTAL] = l->native_logins;
  r->session = s;
  r->listener = l;
  r->pool_id = e->id;
  snprintf(r->detail, sizeof r->detail, "%s", p->address);
  memcpy(r->bytes, tail + 5, 8);
  r->length = 8;
  s->login_report = r;
  s->login_batch = f->batches;
  /* Reported before anything can end it: JavaScript hears of the login before its end. */
  post(f, r);
  s->next = f->sessions;
  if (f->sessions) f->sessions->prev = s;
  f->sessions = s;
  memcpy(welcome, e->welcome, e->welcome_len);
  memcpy(welcome + e->welcome_len, tail, sizeof tail);
  if (watch_as(f, s, &s->client, EPOLL_CTL_MOD) && send_or_keep(f, s, &s->client, welcome, e->welcome_len + sizeof tail)) advance(f, s);
  free(welcome);
  return 1;
}

/* What the client sent so far: answer an SSLRequest, log a learned startup packet in, or hand over. */
static void read_startup(forwarder *f, pending *p) {
  for (;;) {
    if (p->length < STARTUP_LIMIT) {
      ssize_t n = read(p->fd, p->bytes + p->length, STARTUP_LIMIT - p->length);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (p->length < 8) return;
      } else if (n <= 0) {
        /* Gone, or failed: JavaScript sees that on the socket and ends it as it does today. */
        to_javascript(f, p, FALLBACK_INCOMPLETE);
        return;
      } else {
        p->length += (size_t)n;
        if (p->length < 8) continue;
      }
    }
    uint32_t length = read_be32(p->bytes);
    uint32_t code = read_be32(p->bytes + 4);
    if (length < 8 || length > STARTUP_LIMIT) {
      to_javascript(f, p, FALLBACK_TOO_LARGE);
      return;
    }
    if (length == 8 && code == SSL_REQUEST_CODE) {
      /* With a certificate, or with bytes after the request (JavaScript refuses those), it is JavaScript's. */
      if (p->listener->tls_on || p->length > 8) {
        to_javascript(f, p, p->listener->tls_on ? FALLBACK_TLS : FALLBACK_OTHER);
        return;
      }
      ssize_t sent;
      do sent = send(p->fd, "N", 1, MSG_NOSIGNAL);
      while (sent < 0 && errno == EINTR);
      if (sent != 1) {
        to_javascript(f, p, FALLBACK_INCOMPLETE);
        return;
      }
      p->length = 0;
      /* Nothing more was there (the read above would have had it), and a client sends its startup
         packet only once it has the 'N': the next edge brings it, a read now would find nothing. */
      return;
    }
    if (length == 8 && code == GSSENC_REQUEST_CODE) {
      to_javascript(f, p, FALLBACK_GSSENC);
      return;
    }
    if (code == CANCEL_REQUEST_CODE) {
      to_javascript(f, p, FALLBACK_CANCEL);
      return;
    }
    if (p->length < length) {
      if (p->length == STARTUP_LIMIT) to_javascript(f, p, FALLBACK_TOO_LARGE);
      return; /* the rest is still on its way */
    }
    learned *e = find_learned(f, p->listener, p->bytes, length);
    int reason = FALLBACK_UNLEARNED;
    if (!e || !log_in(f, p, e, &reason)) to_javascript(f, p, reason);
    return;
  }
}

static void pending_event(forwarder *f, pending *p) {
  if (p->fd >= 0) read_startup(f, p);
}

/* Takes the connections waiting on a listening socket (a round's worth). */
static void accept_clients(forwarder *f, listener *l) {
  for (int i = 0; l->fd >= 0 && i < ACCEPTS_PER_TURN; i++) {
    struct sockaddr_storage address;
    socklen_t address_len = sizeof address;
    int fd = accept4(l->fd, (struct sockaddr *)&address, &address_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) l->inherits = 1;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        /* Level-triggered: without a rest the thread would spin on the same failure. */
        struct epoll_event none = {.events = 0, .data.ptr = l};
        epoll_ctl(f->epoll_fd, EPOLL_CTL_MOD, l->fd, &none);
        l->rest_until = now_ms(CLOCK_MONOTONIC) + ACCEPT_REST_MS;
      }
      return;
    }
    /* TCP_NODELAY and SO_KEEPALIVE come from the listening socket (start_listening), but not to
       the connections made before it had them: those are set here, until the first queue is empty. */
    if (!l->inherits) {
      int on = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
      setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    }
    pending *p = malloc(sizeof *p);
    if (!p) {
      close(fd);
      continue;
    }
    p->watch = WATCH_PENDING;
    p->fd = fd;
    p->listener = l;
    p->length = 0;
    p->deadline = now_ms(CLOCK_MONOTONIC) + PENDING_WAIT_MS;
    format_address(&address, p->address, sizeof p->address);
    p->next = NULL;
    p->prev = f->pending_tail;
    if (f->pending_tail) f->pending_tail->next = p;
    else f->pending = p;
    f->pending_tail = p;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = p};
    if (epoll_ctl(f->epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
      /* Not watched: JavaScript reads it instead. */
      to_javascript(f, p, FALLBACK_OTHER);
      continue;
    }
    /* The client may have sent its first packet already. */
    read_startup(f, p);
  }
}

/* Hands over connections past their deadline, re-arms rested listeners; returns the wait until the next such time (-1: none). */
static int expire_logins(forwarder *f) {
  if (!f->listeners) return -1;
  int64_t now = now_ms(CLOCK_MONOTONIC);
  while (f->pending && f->pending->deadline <= now) to_javascript(f, f->pending, FALLBACK_INCOMPLETE);
  int64_t next = f->pending ? f->pending->deadline : 0;
  for (listener *l = f->listeners; l; l = l->next) {
    if (!l->rest_until || l->fd < 0) continue;
    if (l->rest_until <= now) {
      struct epoll_event ev = {.events = EPOLLIN, .data.ptr = l};
      epoll_ctl(f->epoll_fd, EPOLL_CTL_MOD, l->fd, &ev);
      l->rest_until = 0;
    } else if (!next || l->rest_until < next) {
      next = l->rest_until;
    }
  }
  return next ? (int)(next - now) : -1;
}

/* CMD_LISTEN: the listener (made by listen(), on the JS thread) starts accepting. */
static void start_listening(forwarder *f, listener *l) {
  l->next = f->listeners;
  f->listeners = l;
  if (l->brief) f->report_window_us = BRIEF_REPORT_WINDOW_US;
  /*
   * As Node's listener does for the sockets it accepts (noDelay, keepAlive), but once: Linux gives a
   * connection the listening socket's options when its handshake completes, which saves two system
   * calls per connection (test/proxy/pooling/native-login.test.ts checks the keepalive timer of such
   * clients). Those already waiting to be accepted get them in accept_clients.
   */
  int on = 1;
  setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  setsockopt(l->fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = l};
  if (epoll_ctl(f->epoll_fd, EPOLL_CTL_ADD, l->fd, &ev) != 0) {
    close(l->fd);
    l->fd = -1;
  }
}

static void forget(forwarder *f, double id, listener *l);

/* No more accepting (shutdown): its connections still being read go to JavaScript, which refuses them; what it learned is forgotten. */
static void stop_listening(forwarder *f, listener *l) {
  /* The listener itself is freed with the forwarder: an event of this round may still name it. */
  if (l->fd >= 0) {
    epoll_ctl(f->epoll_fd, EPOLL_CTL_DEL, l->fd, NULL);
    close(l->fd);
    l->fd = -1;
    l->rest_until = 0;
  }
  for (pending *p = f->pending, *next; p; p = next) {
    next = p->next;
    if (p->listener == l) to_javascript(f, p, FALLBACK_INCOMPLETE);
  }
  while (f->learned && f->learned->listener == l) forget(f, f->learned->id, l);
  for (learned *e = f->learned; e && e->next;) {
    if (e->next->listener == l) forget(f, e->next->id, l);
    else e = e->next;
  }
}

static void free_learned(learned *e) {
  free(e->startup);
  free(e->welcome);
  free(e);
}

static void forget(forwarder *f, double id, listener *l) {
  for (learned **at = &f->learned; *at; at = &(*at)->next) {
    if ((*at)->id != id || (*at)->listener != l) continue;
    learned *e = *at;
    *at = e->next;
    free_learned(e);
    return;
  }
}

/* A closed pool: no client is logged in to it any more (JavaScript's logins go to its new pool). */
static void forget_pool(forwarder *f, pool *p) {
  for (learned **at = &f->learned; *at;) {
    learned *e = *at;
    if (e->pool != p) {
      at = &e->next;
      continue;
    }
    *at = e->next;
    free_learned(e);
  }
}

/* CMD_LEARN: bytes = startup packet then welcome; count = the startup packet's length. Replaces what the same packet taught before. */
static void learn(forwarder *f, command *c) {
  if (c->pool->closing) return; /* taught before JavaScript closed the pool: its clients get the new one */
  learned *e = calloc(1, sizeof *e);
  if (!e || c->count > c->length || !(e->startup = malloc(c->count ? c->count : 1)) || !(e->welcome = malloc(c->length - c->count + 1))) {
    if (e) free_learned(e);
    return; /* not learned: such logins go on in JavaScript */
  }
  e->id = c->server_id;
  e->listener = c->listener;
  e->pool = c->pool;
  e->startup_len = c->count;
  e->welcome_len = c->length - c->count;
  memcpy(e->startup, c->bytes, e->startup_len);
  memcpy(e->welcome, c->bytes + e->startup_len, e->welcome_len);
  learned *old = find_learned(f, e->listener, e->startup, e->startup_len);
  if (old) forget(f, old->id, e->listener);
  forget(f, e->id, e->listener);
  e->next = f->learned;
  f->learned = e;
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
      if (!events[i].data.ptr) stop |= run_commands(f, 1);
    }
    for (int i = 0; i < n; i++) {
      void *watched = events[i].data.ptr;
      if (!watched) continue;
      uint32_t ev = events[i].events;
      if (*(uint8_t *)watched == WATCH_LINK) {
        link_event(f, watched, ev);
        continue;
      }
      if (*(uint8_t *)watched == WATCH_LISTENER) {
        accept_clients(f, watched);
        continue;
      }
      if (*(uint8_t *)watched == WATCH_PENDING) {
        pending_event(f, watched);
        continue;
      }
      side *sd = watched;
      if (sd->fd < 0) continue;
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
    /* Commands queued without a wake (releases) run before the thread sleeps. */
    pthread_mutex_lock(&f->lock);
    int waiting = f->head != NULL;
    pthread_mutex_unlock(&f->lock);
    if (waiting) stop |= run_commands(f, 0);
    timeout = expire(f);
    int logins = expire_logins(f);
    if (logins >= 0 && (timeout < 0 || logins < timeout)) timeout = logins;
    int reports = stop ? (flush_reports(f), -1) : flush_reports_due(f);
    if (reports >= 0 && (timeout < 0 || reports < timeout)) timeout = reports;
    if (f->pools) {
      return_idle_links(f);
      if (has_parked_links(f) && (timeout < 0 || timeout > PARK_IDLE_MS / 2)) timeout = PARK_IDLE_MS / 2;
    }
    report_dead_pools(f);
    while (f->dead_pending) {
      struct pending *p = f->dead_pending;
      f->dead_pending = p->next;
      free(p);
    }
    while (f->dead_links) {
      server_link *l = f->dead_links;
      f->dead_links = l->next_parked;
      free(l->statements);
      free(l);
    }
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

/* Marks the externals that are sessions, so that no other external can be passed off as one. */
static const napi_type_tag SESSION_TAG = {0x74616e64656d2d73ULL, 0x657373696f6e2d31ULL};

static napi_value throw_errno(napi_env env, const char *what, int error) {
  char text[200];
  errno_text(text, sizeof text, what, error);
  napi_throw_error(env, NULL, text);
  return NULL;
}

/*
 * On the JS thread, pooled reports other than an end: onPooled('want', poolId),
 * onPooled('returned', poolId, serverId, status, broken, statements?), onPooled('parameter', sessionId, name, value, serverId).
 */
/* A link's statements for JavaScript: a Buffer of NUL-terminated names, oldest first; undefined: not the thread's to say. */
static napi_value statement_names(napi_env env, report *r) {
  napi_value value;
  if (r->has_link_statements == 1) napi_create_buffer_copy(env, r->link_statements_len, r->link_statements_len ? r->link_statements : "", NULL, &value);
  else napi_get_undefined(env, &value);
  return value;
}

static void call_on_pooled(napi_env env, forwarder *f, report *r) {
  napi_value callback, undefined, args[6];
  if (!f->on_pooled || napi_get_reference_value(env, f->on_pooled, &callback) != napi_ok || !callback) return;
  napi_get_undefined(env, &undefined);
  size_t argc = 2;
  switch (r->kind) {
    case REPORT_WANT:
      napi_create_string_utf8(env, "want", NAPI_AUTO_LENGTH, &args[0]);
      napi_create_double(env, r->pool_id, &args[1]);
      break;
    case REPORT_RETURNED: {
      char status[2] = {(char)r->status, 0};
      napi_create_string_utf8(env, "returned", NAPI_AUTO_LENGTH, &args[0]);
      napi_create_double(env, r->pool_id, &args[1]);
      napi_create_double(env, r->server_id, &args[2]);
      napi_create_string_utf8(env, status, 1, &args[3]);
      napi_get_boolean(env, r->broken, &args[4]);
      args[5] = statement_names(env, r);
      argc = 6;
      break;
    }
    case REPORT_PARAMETER: {
      /* name NUL value NUL, as the server sent it; anything malformed is left to the client. */
      const char *name = r->bytes;
      const char *name_end = memchr(r->bytes, 0, r->length);
      if (!name_end || r->bytes[r->length - 1] != 0) return;
      napi_create_string_utf8(env, "parameter", NAPI_AUTO_LENGTH, &args[0]);
      napi_create_double(env, r->session->id, &args[1]);
      napi_create_string_utf8(env, name, (size_t)(name_end - name), &args[2]);
      napi_create_string_utf8(env, name_end + 1, NAPI_AUTO_LENGTH, &args[3]);
      napi_create_double(env, r->server_id, &args[4]);
      argc = 5;
      break;
    }
    case REPORT_POOL_GONE:
      napi_create_string_utf8(env, "closed", NAPI_AUTO_LENGTH, &args[0]);
      napi_create_double(env, r->pool_id, &args[1]);
      break;
    case REPORT_END:
    case REPORT_ACCEPTED:
    case REPORT_LOGIN:
    case REPORT_BRIEF:
      return;
  }
  napi_call_function(env, undefined, callback, argc, args, NULL);
}

static void free_counters(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

/*
 * On the JS thread, what the listener brought: onLogin('accepted', fd, bytes) for a connection
 * JavaScript logs in (bytes: what it sent so far), onLogin('login', id, learnedId, handle, counters,
 * cancelKey, address, localAddress) for a native login (a pooled session the thread forwards; its end comes to onEnd),
 * onLogin('brief', learnedId, clients, counters) for native logins that ended unreported (fold_brief).
 */
static void call_on_login(napi_env env, forwarder *f, report *r) {
  napi_value callback, undefined, args[8];
  listener *l = r->listener;
  int have = l && l->on_login && napi_get_reference_value(env, l->on_login, &callback) == napi_ok && callback;
  napi_get_undefined(env, &undefined);
  if (r->kind == REPORT_ACCEPTED) {
    if (!have) return; /* call_on_end closes the descriptor */
    napi_create_string_utf8(env, "accepted", NAPI_AUTO_LENGTH, &args[0]);
    napi_create_int32(env, r->fd, &args[1]);
    napi_create_buffer_copy(env, r->length, r->length ? r->bytes : "", NULL, &args[2]);
    r->fd = -1;
    napi_call_function(env, undefined, callback, 3, args, NULL);
    return;
  }
  if (r->kind == REPORT_BRIEF) {
    if (!have) return;
    napi_value sums;
    void *data;
    if (napi_create_arraybuffer(env, COUNTERS * sizeof(double), &data, &sums) != napi_ok) return;
    memcpy(data, r->bytes, COUNTERS * sizeof(double));
    napi_create_string_utf8(env, "brief", NAPI_AUTO_LENGTH, &args[0]);
    napi_create_double(env, r->pool_id, &args[1]);
    napi_create_double(env, (double)r->length, &args[2]);
    napi_create_typedarray(env, napi_float64_array, COUNTERS, sums, 0, &args[3]);
    napi_call_function(env, undefined, callback, 4, args, NULL);
    return;
  }
  session *s = r->session;
  /* Live sessions keep the process running; its end report takes this back. */
  if (f->live++ == 0) napi_ref_threadsafe_function(env, f->on_end);
  napi_value buffer, counters, handle;
  /* The counters belong to JavaScript from here (freed when it lets go of them), as a started session's do. */
  if (napi_create_external_arraybuffer(env, s->counters, COUNTERS * sizeof(double), free_counters, NULL, &buffer) != napi_ok ||
      napi_create_typedarray(env, napi_float64_array, COUNTERS, buffer, 0, &counters) != napi_ok ||
      napi_create_reference(env, counters, 1, &s->counters_ref) != napi_ok || napi_create_external(env, s, NULL, NULL, &handle) != napi_ok ||
      napi_type_tag_object(env, handle, &SESSION_TAG) != napi_ok || !have) {
    /* JavaScript cannot know it: it is ended (and its end report frees it). */
    send_command(f, CMD_TERMINATE, s, NULL, 0);
    return;
  }
  napi_create_string_utf8(env, "login", NAPI_AUTO_LENGTH, &args[0]);
  napi_create_double(env, s->id, &args[1]);
  napi_create_double(env, r->pool_id, &args[2]);
  args[3] = handle;
  args[4] = counters;
  napi_create_buffer_copy(env, 8, r->bytes, NULL, &args[5]);
  napi_create_string_utf8(env, r->detail, NAPI_AUTO_LENGTH, &args[6]);
  napi_create_string_utf8(env, r->local, NAPI_AUTO_LENGTH, &args[7]);
  napi_call_function(env, undefined, callback, 8, args, NULL);
}

/* A pooled session's END_HANDED_BACK: what JavaScript takes over (the client, its bytes, the connection it held). */
static napi_value pooled_end(napi_env env, report *r) {
  napi_value result, value;
  napi_create_object(env, &result);
  char status[2] = {r->status ? (char)r->status : 'I', 0};
  napi_create_string_utf8(env, status, 1, &value);
  napi_set_named_property(env, result, "status", value);
  napi_create_double(env, r->server_id, &value);
  napi_set_named_property(env, result, "serverId", value);
  napi_create_int32(env, r->fd, &value);
  napi_set_named_property(env, result, "fd", value);
  r->fd = -1;
  napi_create_buffer_copy(env, r->length, r->length ? r->bytes : "", NULL, &value);
  napi_set_named_property(env, result, "held", value);
  napi_set_named_property(env, result, "serverStatements", statement_names(env, r));
  napi_create_buffer_copy(env, r->client_statements_len, r->client_statements_len ? r->client_statements : "", NULL, &value);
  napi_set_named_property(env, result, "statements", value);
  return result;
}

static void call_on_report(napi_env env, napi_value js_callback, forwarder *f, report *r);

/* On the JS thread: a batch of reports (post), in order. */
static void call_on_end(napi_env env, napi_value js_callback, void *context, void *data) {
  report *r = data;
  if (!env) {
    free_reports(r);
    return;
  }
  while (r) {
    report *next = r->next;
    r->next = NULL;
    call_on_report(env, js_callback, context, r);
    /* As if each report had been a call of its own: what one throws is uncaught, and the next still runs. */
    napi_value error;
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending && napi_get_and_clear_last_exception(env, &error) == napi_ok) {
      napi_fatal_exception(env, error);
    }
    r = next;
  }
}

/* A session ended (or, pooled, asked for or gave back a connection, or reported a parameter), or the listener brought a client. */
static void call_on_report(napi_env env, napi_value js_callback, forwarder *f, report *r) {
  session *s = r->session;
  if (r->kind == REPORT_ACCEPTED || r->kind == REPORT_LOGIN || r->kind == REPORT_BRIEF) {
    call_on_login(env, f, r);
    if (r->fd >= 0) close(r->fd);
    free_report(r);
    return;
  }
  if (r->kind == REPORT_POOL_GONE) {
    /* The thread writes its figures no more, and no command may name it after CMD_FREE_POOL. */
    pool *p = r->pool;
    command *free_command = p->free_command;
    p->gone = 1;
    p->free_command = NULL;
    napi_delete_reference(env, p->figures_ref);
    p->figures_ref = NULL;
    enqueue(f, free_command); /* last: the thread may free it from then on (call_on_pooled reads the report only) */
  }
  if (r->kind != REPORT_END) {
    call_on_pooled(env, f, r);
    free_report(r);
    return;
  }
  if (s->counters_ref) {
    napi_delete_reference(env, s->counters_ref);
    s->counters_ref = NULL;
  }
  napi_value args[5], undefined;
  napi_get_undefined(env, &undefined);
  napi_create_double(env, s->id, &args[0]);
  napi_create_string_utf8(env, REASON_NAMES[r->reason], NAPI_AUTO_LENGTH, &args[1]);
  napi_create_string_utf8(env, r->detail, NAPI_AUTO_LENGTH, &args[2]);
  napi_get_boolean(env, r->explained, &args[3]);
  /* What JavaScript takes over, for a handed-back client only: other ends need no object. */
  args[4] = s->pooled && r->reason == END_HANDED_BACK ? pooled_end(env, r) : undefined;
  napi_call_function(env, undefined, js_callback, 5, args, NULL);
  /* A descriptor JavaScript did not get (it failed before taking it) is closed, not leaked. */
  if (r->fd >= 0) close(r->fd);
  /* Live sessions keep the process running, as their sockets did in Node. */
  if (--f->live == 0) napi_unref_threadsafe_function(env, f->on_end);
  /* Allocated when the session started, so that no allocation failure can keep it from being freed. */
  command *release = s->release;
  s->release = NULL;
  enqueue_waking(f, release, 0);
  free_report(r);
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
    if (c->fd >= 0 && c->kind == CMD_LEND) close(c->fd);
    if (c->kind == CMD_LISTEN) {
      close(c->listener->fd);
      free(c->listener);
    }
    if (c->kind == CMD_START) {
      close(c->session->client.fd);
      close(c->session->server.fd);
      free_session(c->session);
    }
    free(c->bytes);
    free(c);
  }
  for (listener *l = f->listeners, *next; l; l = next) {
    next = l->next;
    if (l->fd >= 0) close(l->fd);
    free(l);
  }
  for (struct pending *p = f->pending, *next; p; p = next) {
    next = p->next;
    close(p->fd);
    free(p);
  }
  for (struct pending *p = f->dead_pending, *next; p; p = next) {
    next = p->next;
    free(p);
  }
  for (learned *e = f->learned, *next; e; e = next) {
    next = e->next;
    free_learned(e);
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
  free(f->scratch);
  free(f);
}


static forwarder *instance(napi_env env) {
  void *data = NULL;
  napi_get_instance_data(env, &data);
  if (!data) napi_throw_error(env, NULL, "tandem forwarder: init() was not called");
  return data;
}

/* init(onEnd(id, reason, detail, explained, pooledEnd), serverLostErrorResponse[, onSearchPath(id, value)[, onPooled(kind, id, ...)]]) */
static napi_value init(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
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
  f->report_window_us = REPORT_WINDOW_US;
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
  napi_valuetype fourth = napi_undefined;
  if (argc >= 4) napi_typeof(env, argv[3], &fourth);
  if (fourth == napi_function && napi_create_reference(env, argv[3], 1, &f->on_pooled) != napi_ok) {
    failed = "napi_create_reference";
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
  /* Node's sockets are non-blocking already, and a duplicate shares that flag: setting it again
     is a system call per login for nothing (bench/README.md, Pooling, -C). */
  int flags = fcntl(copy, F_GETFL);
  if (flags < 0 || (!(flags & O_NONBLOCK) && fcntl(copy, F_SETFL, flags | O_NONBLOCK) < 0)) {
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

/* A session for `start` or `startPooled`, with its counters; NULL after throwing. */
static session *new_session(napi_env env, napi_value id_value, napi_value counters_value, const char *usage) {
  double id;
  napi_typedarray_type type;
  size_t count;
  void *counters;
  if (napi_get_value_double(env, id_value, &id) != napi_ok ||
      napi_get_typedarray_info(env, counters_value, &type, &count, &counters, NULL, NULL) != napi_ok ||
      type != napi_float64_array || count < COUNTERS) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  session *s = calloc(1, sizeof *s);
  if (!s) {
    throw_errno(env, "calloc", ENOMEM);
    return NULL;
  }
  s->client.session = s->server.session = s;
  s->client.fd = s->server.fd = -1;
  s->client.writable = s->server.writable = 1;
  s->id = id;
  s->counters = counters;
  /* The totals go on from what JavaScript counted before the thread took the session (its login, or
     the transactions of a pooled client coming back from Node): counters never go backwards. */
  const double *so_far = counters;
  s->bytes_in = (uint64_t)so_far[BYTES_IN];
  s->bytes_out = (uint64_t)so_far[BYTES_OUT];
  s->queries = (uint64_t)so_far[QUERIES];
  s->transactions = so_far[TRANSACTIONS];
  s->held_us = so_far[HELD_US];
  s->waited_us = so_far[WAITED_US];
  s->requests = so_far[REQUESTS];
  s->request_us = so_far[REQUEST_US];
  s->release = calloc(1, sizeof *s->release);
  if (!s->release) {
    free_session(s);
    throw_errno(env, "calloc", ENOMEM);
    return NULL;
  }
  s->release->kind = CMD_RELEASE;
  s->release->session = s;
  return s;
}

/* Hands a new session to the thread; on failure closes its descriptors, frees it and throws. */
static napi_value launch(napi_env env, forwarder *f, session *s, napi_value counters_value) {
  if (napi_create_reference(env, counters_value, 1, &s->counters_ref) != napi_ok) {
    close(s->client.fd);
    if (s->server.fd >= 0) close(s->server.fd);
    free_session(s);
    napi_throw_error(env, NULL, "tandem forwarder: napi_create_reference failed");
    return NULL;
  }
  if (!send_command(f, CMD_START, s, NULL, 0)) {
    napi_delete_reference(env, s->counters_ref);
    close(s->client.fd);
    if (s->server.fd >= 0) close(s->server.fd);
    free_session(s);
    return throw_errno(env, "start", ENOMEM);
  }
  if (f->live++ == 0) napi_ref_threadsafe_function(env, f->on_end);
  napi_value handle;
  CHECK(napi_create_external(env, s, NULL, NULL, &handle));
  CHECK(napi_type_tag_object(env, handle, &SESSION_TAG));
  return handle;
}

/* start(id, clientFd, serverFd, counters: Float64Array(12), toClient: Buffer, toServer: Buffer) → handle */
static napi_value start(napi_env env, napi_callback_info info) {
  static const char USAGE[] = "start(id, clientFd, serverFd, counters: Float64Array(12), toClient: Buffer, toServer: Buffer)";
  forwarder *f = instance(env);
  if (!f) return NULL;
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t client_fd, server_fd;
  if (argc < 6 || napi_get_value_int32(env, argv[1], &client_fd) != napi_ok || napi_get_value_int32(env, argv[2], &server_fd) != napi_ok) {
    napi_throw_type_error(env, NULL, USAGE);
    return NULL;
  }
  session *s = new_session(env, argv[0], argv[3], USAGE);
  if (!s) return NULL;
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
  return launch(env, f, s, argv[3]);
}

/* Marks the externals that are pools. */
static const napi_type_tag POOL_TAG = {0x74616e64656d2d70ULL, 0x6f6f6c2d00000001ULL};

/* JavaScript let go of a pool's handle: the thread's reference, if not given up yet, keeps it. */
static void pool_handle_finalized(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  release_pool(data);
}

/*
 * pool(id, figures: Float64Array, waitBoundsUs: Float64Array) → handle: a pool of the thread's (see
 * "pooled sessions"), for startPooled and the pool commands; `figures` as POOL_* above, with a
 * bucket per bound and one more.
 */
static napi_value create_pool(napi_env env, napi_callback_info info) {
  static const char USAGE[] = "pool(id, figures: Float64Array, waitBoundsUs: Float64Array)";
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  double id;
  napi_typedarray_type type, bounds_type;
  size_t count, bound_count;
  void *figures, *bounds;
  if (argc < 3 || napi_get_value_double(env, argv[0], &id) != napi_ok ||
      napi_get_typedarray_info(env, argv[1], &type, &count, &figures, NULL, NULL) != napi_ok || type != napi_float64_array ||
      napi_get_typedarray_info(env, argv[2], &bounds_type, &bound_count, &bounds, NULL, NULL) != napi_ok || bounds_type != napi_float64_array ||
      bound_count > MAX_WAIT_BOUNDS || count < POOL_WAIT_BUCKETS + bound_count + 1) {
    napi_throw_type_error(env, NULL, USAGE);
    return NULL;
  }
  pool *p = calloc(1, sizeof *p);
  if (!p) return throw_errno(env, "calloc", ENOMEM);
  p->id = id;
  p->figures = figures;
  p->bound_count = (uint32_t)bound_count;
  memcpy(p->bounds, bounds, bound_count * sizeof(double));
  /* What the pool writes to lives until the thread reports it gone (closePool). */
  p->refs = 2;
  if (napi_create_reference(env, argv[1], 1, &p->figures_ref) != napi_ok) {
    free(p);
    napi_throw_error(env, NULL, "tandem forwarder: napi_create_reference failed");
    return NULL;
  }
  napi_value handle;
  CHECK(napi_create_external(env, p, pool_handle_finalized, NULL, &handle));
  CHECK(napi_type_tag_object(env, handle, &POOL_TAG));
  return handle;
}

/* What an external handle made here points to, if it carries `tag` (else NULL: no other external passes for it). */
static void *tagged_external(napi_env env, napi_value handle, const napi_type_tag *tag) {
  void *pointer = NULL;
  bool tagged = false;
  if (napi_check_object_type_tag(env, handle, tag, &tagged) != napi_ok || !tagged || napi_get_value_external(env, handle, &pointer) != napi_ok) return NULL;
  return pointer;
}

/* The pool a handle names; NULL (with an error thrown) once the thread reported it gone. */
static pool *pool_of(napi_env env, napi_value handle) {
  pool *p = tagged_external(env, handle, &POOL_TAG);
  if (p && p->gone) {
    napi_throw_error(env, NULL, "tandem forwarder: the pool is closed");
    return NULL;
  }
  return p;
}

/* startPooled(id, clientFd, counters: Float64Array(12), held: Buffer, pool) → handle: a pooled client alone. */
static napi_value start_pooled(napi_env env, napi_callback_info info) {
  static const char USAGE[] = "startPooled(id, clientFd, counters: Float64Array(12), held: Buffer, pool)";
  forwarder *f = instance(env);
  if (!f) return NULL;
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t client_fd;
  void *held;
  size_t held_len;
  pool *p = argc < 5 ? NULL : pool_of(env, argv[4]);
  if (!p || napi_get_value_int32(env, argv[1], &client_fd) != napi_ok || napi_get_buffer_info(env, argv[3], &held, &held_len) != napi_ok) {
    napi_throw_type_error(env, NULL, USAGE);
    return NULL;
  }
  session *s = new_session(env, argv[0], argv[2], USAGE);
  if (!s) return NULL;
  s->pooled = 1;
  s->pool = p;
  s->server_status = 'I';
  if (held_len > 0 && !hold(s, held, held_len)) {
    free_session(s);
    return throw_errno(env, "malloc", ENOMEM);
  }
  s->client.fd = take_fd(client_fd);
  if (s->client.fd < 0) {
    int error = errno;
    free_session(s);
    return throw_errno(env, "dup", error);
  }
  return launch(env, f, s, argv[2]);
}

static session *session_of(napi_env env, napi_value handle) {
  return tagged_external(env, handle, &SESSION_TAG);
}

/* A command for one of the thread's pools: (pool, ...), with the arguments its kind takes. */
static napi_value pool_command(napi_env env, napi_callback_info info, command_kind kind, const char *usage) {
  forwarder *f = instance(env);
  if (!f) return NULL;
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  pool *p = argc < 1 ? NULL : pool_of(env, argv[0]);
  command *c = p ? calloc(1, sizeof *c) : NULL;
  if (!c) {
    if (p) return throw_errno(env, "command", ENOMEM);
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  c->kind = kind;
  c->pool = p;
  c->fd = -1;
  int ok = 1;
  uint32_t count = 0;
  switch (kind) {
    case CMD_LEND: {
      int32_t server_fd;
      ok = argc >= 6 && napi_get_value_int32(env, argv[1], &server_fd) == napi_ok && napi_get_value_double(env, argv[2], &c->server_id) == napi_ok &&
           napi_get_value_double(env, argv[3], &c->lifetime_ms) == napi_ok && copy_bytes(env, argv[4], &c->bytes, &c->length) &&
           napi_get_value_uint32(env, argv[5], &count) == napi_ok && count > 0;
      if (ok) {
        /* Node's socket already made it non-blocking (a flag of the connection, shared by duplicates). */
        c->fd = fcntl(server_fd, F_DUPFD_CLOEXEC, 0);
        if (c->fd < 0) {
          int error = errno;
          free(c);
          return throw_errno(env, "dup", error);
        }
      }
      break;
    }
    case CMD_RECLAIM:
    case CMD_DRAIN:
      ok = argc >= 2 && napi_get_value_uint32(env, argv[1], &count) == napi_ok;
      break;
    case CMD_CLOSE_POOL:
      if (p->close_asked || !(p->free_command = calloc(1, sizeof *p->free_command))) {
        free(c);
        return p->close_asked ? NULL : throw_errno(env, "command", ENOMEM);
      }
      p->close_asked = 1;
      p->free_command->kind = CMD_FREE_POOL;
      p->free_command->pool = p;
      p->free_command->fd = -1;
      break;
    case CMD_FAIL_WANT: {
      size_t why_len;
      ok = argc >= 4 && copy_bytes(env, argv[1], &c->bytes, &c->length) && napi_get_value_uint32(env, argv[2], &count) == napi_ok &&
           napi_get_value_string_utf8(env, argv[3], c->why, sizeof c->why, &why_len) == napi_ok;
      break;
    }
    default:
      break;
  }
  if (!ok) {
    free(c->bytes);
    free(c);
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  c->count = count;
  enqueue(f, c);
  return NULL;
}

/*
 * lend(pool, serverFd, serverId, lifetimeMs, statements, maxPreparedStatements): a server connection
 * for the pool that asked (REPORT_WANT), with the named statements it holds (NUL-terminated names,
 * oldest first) and how many it may hold.
 */
static napi_value lend_link(napi_env env, napi_callback_info info) {
  return pool_command(env, info, CMD_LEND, "lend(pool, serverFd, serverId, lifetimeMs, statements: Buffer, maxPreparedStatements)");
}

/* reclaim(pool, count): links back to JavaScript, parked ones now, others as they come free. */
static napi_value reclaim_links(napi_env env, napi_callback_info info) {
  return pool_command(env, info, CMD_RECLAIM, "reclaim(pool, count)");
}

/* drain(pool, on): while on, every link goes back as it comes free (a pause, a retired version). */
static napi_value drain_pool(napi_env env, napi_callback_info info) {
  return pool_command(env, info, CMD_DRAIN, "drain(pool, on: 0 | 1)");
}

/*
 * failWant(pool, errorResponse, minWaitMs, why): no link for a REPORT_WANT; the longest waiter gets
 * the error if it waited that long, and ends with END_POOL_ERROR and `why` (SQLSTATE, space, message).
 */
static napi_value fail_want_command(napi_env env, napi_callback_info info) {
  return pool_command(env, info, CMD_FAIL_WANT, "failWant(pool, errorResponse: Buffer, minWaitMs, why: string)");
}

/*
 * closePool(pool): JavaScript wants it no more (see "closing a pool"); onPooled('closed', poolId)
 * says when the thread is done with it, after which the handle names nothing.
 */
static napi_value close_pool_command(napi_env env, napi_callback_info info) {
  return pool_command(env, info, CMD_CLOSE_POOL, "closePool(pool)");
}

/* handBackWaiter(pool): no link the thread can use; the longest waiter goes back to JavaScript. */
static napi_value hand_back_waiter_command(napi_env env, napi_callback_info info) {
  return pool_command(env, info, CMD_HAND_BACK_WAITER, "handBackWaiter(pool)");
}

/* expire(pool): every link lent so far goes back, parked ones now, the others as they come free (RECONNECT). */
static napi_value expire_links(napi_env env, napi_callback_info info) {
  return pool_command(env, info, CMD_EXPIRE, "expire(pool)");
}

/* retire(handle, errorResponse) and terminate(handle, errorResponse) */
static napi_value command_with_bytes(napi_env env, napi_callback_info info, command_kind kind) {
  forwarder *f = instance(env);
  if (!f) return NULL;
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  session *s = argc < 2 ? NULL : session_of(env, argv[0]);
  void *bytes;
  size_t length;
  if (!s || napi_get_buffer_info(env, argv[1], &bytes, &length) != napi_ok) {
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

/* Marks the externals that are listeners. */
static const napi_type_tag LISTENER_TAG = {0x74616e64656d2d6cULL, 0x697374656e2d0001ULL};

static listener *listener_of(napi_env env, napi_value handle) {
  return tagged_external(env, handle, &LISTENER_TAG);
}

/*
 * listen(listenFd, loginFigures: Float64Array, tlsOn: boolean, onLogin) → handle: the thread accepts
 * on (a duplicate of) the proxy's listening socket from now on and logs learned clients in itself
 * ("native logins"); what it accepts goes to onLogin (call_on_login).
 */
static napi_value listen_command(napi_env env, napi_callback_info info) {
  static const char USAGE[] = "listen(listenFd, loginFigures: Float64Array, tlsOn: boolean, onLogin, brief?: boolean)";
  forwarder *f = instance(env);
  if (!f) return NULL;
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  napi_typedarray_type type;
  size_t count;
  void *figures;
  bool tls_on, brief = false;
  napi_valuetype callback_type = napi_undefined;
  if (argc >= 4) napi_typeof(env, argv[3], &callback_type);
  if (argc < 4 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_typedarray_info(env, argv[1], &type, &count, &figures, NULL, NULL) != napi_ok || type != napi_float64_array || count < LOGIN_FIGURES ||
      napi_get_value_bool(env, argv[2], &tls_on) != napi_ok || callback_type != napi_function ||
      (argc >= 5 && napi_get_value_bool(env, argv[4], &brief) != napi_ok)) {
    napi_throw_type_error(env, NULL, USAGE);
    return NULL;
  }
  command *c = calloc(1, sizeof *c);
  listener *l = calloc(1, sizeof *l);
  if (!c || !l) {
    free(c);
    free(l);
    return throw_errno(env, "calloc", ENOMEM);
  }
  l->watch = WATCH_LISTENER;
  l->tls_on = tls_on;
  l->brief = brief;
  l->figures = figures;
  l->fd = take_fd(fd);
  if (l->fd < 0) {
    int error = errno;
    free(c);
    free(l);
    return throw_errno(env, "dup", error);
  }
  napi_value handle;
  /* The figures and the callback live as long as the listener, which lives as long as the process. */
  if (napi_create_reference(env, argv[1], 1, &l->figures_ref) != napi_ok || napi_create_reference(env, argv[3], 1, &l->on_login) != napi_ok ||
      napi_create_external(env, l, NULL, NULL, &handle) != napi_ok || napi_type_tag_object(env, handle, &LISTENER_TAG) != napi_ok) {
    close(l->fd);
    free(c);
    free(l);
    napi_throw_error(env, NULL, "tandem forwarder: could not make a listener");
    return NULL;
  }
  c->kind = CMD_LISTEN;
  c->fd = -1;
  c->listener = l;
  /* A listening proxy keeps the process running, as Node's listener did. */
  if (f->live++ == 0) napi_ref_threadsafe_function(env, f->on_end);
  enqueue(f, c);
  return handle;
}

/* A command naming a listener: (listener, ...), with what its kind takes. */
static command *listener_command(napi_env env, napi_value handle, command_kind kind, const char *usage) {
  listener *l = listener_of(env, handle);
  if (!l) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  command *c = calloc(1, sizeof *c);
  if (!c) {
    throw_errno(env, "calloc", ENOMEM);
    return NULL;
  }
  c->kind = kind;
  c->fd = -1;
  c->listener = l;
  return c;
}

/* unlisten(listener): no more accepting (shutdown); its connections being read go to onLogin('accepted'). */
static napi_value unlisten_command(napi_env env, napi_callback_info info) {
  forwarder *f = instance(env);
  if (!f) return NULL;
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  command *c = listener_command(env, argc < 1 ? NULL : argv[0], CMD_UNLISTEN, "unlisten(listener)");
  if (!c) return NULL;
  if (c->listener->unlistened) {
    free(c);
    return NULL;
  }
  c->listener->unlistened = 1;
  enqueue(f, c);
  if (--f->live == 0) napi_unref_threadsafe_function(env, f->on_end);
  return NULL;
}

/* learn(listener, id, startupPacket: Buffer, welcome: Buffer, pool): a login the thread may make itself from now on (replacing id's). */
static napi_value learn_command(napi_env env, napi_callback_info info) {
  static const char USAGE[] = "learn(listener, id, startupPacket: Buffer, welcome: Buffer, pool)";
  forwarder *f = instance(env);
  if (!f) return NULL;
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  double id;
  void *startup, *welcome;
  size_t startup_len, welcome_len;
  pool *p = argc < 5 ? NULL : pool_of(env, argv[4]);
  if (!p || napi_get_value_double(env, argv[1], &id) != napi_ok || napi_get_buffer_info(env, argv[2], &startup, &startup_len) != napi_ok ||
      napi_get_buffer_info(env, argv[3], &welcome, &welcome_len) != napi_ok || startup_len == 0) {
    napi_throw_type_error(env, NULL, USAGE);
    return NULL;
  }
  command *c = listener_command(env, argv[0], CMD_LEARN, USAGE);
  if (!c) return NULL;
  c->bytes = malloc(startup_len + welcome_len);
  if (!c->bytes) {
    free(c);
    return throw_errno(env, "malloc", ENOMEM);
  }
  memcpy(c->bytes, startup, startup_len);
  if (welcome_len) memcpy(c->bytes + startup_len, welcome, welcome_len);
  c->server_id = id;
  c->pool = p;
  c->length = startup_len + welcome_len;
  c->count = (uint32_t)startup_len;
  enqueue(f, c);
  return NULL;
}

/* forget(listener, id): the login learned under id is JavaScript's again. */
static napi_value forget_command(napi_env env, napi_callback_info info) {
  forwarder *f = instance(env);
  if (!f) return NULL;
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  double id;
  if (argc < 2 || napi_get_value_double(env, argv[1], &id) != napi_ok) {
    napi_throw_type_error(env, NULL, "forget(listener, id)");
    return NULL;
  }
  command *c = listener_command(env, argv[0], CMD_FORGET, "forget(listener, id)");
  if (!c) return NULL;
  c->server_id = id;
  enqueue(f, c);
  return NULL;
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
    bad = scan(NULL, sc, data, length, s, from_client, &bad_type, &bad_length, &counted);
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
      {"pool", NULL, create_pool, NULL, NULL, NULL, napi_default, NULL},
      {"startPooled", NULL, start_pooled, NULL, NULL, NULL, napi_default, NULL},
      {"lend", NULL, lend_link, NULL, NULL, NULL, napi_default, NULL},
      {"reclaim", NULL, reclaim_links, NULL, NULL, NULL, napi_default, NULL},
      {"drain", NULL, drain_pool, NULL, NULL, NULL, napi_default, NULL},
      {"failWant", NULL, fail_want_command, NULL, NULL, NULL, napi_default, NULL},
      {"handBackWaiter", NULL, hand_back_waiter_command, NULL, NULL, NULL, napi_default, NULL},
      {"expire", NULL, expire_links, NULL, NULL, NULL, napi_default, NULL},
      {"closePool", NULL, close_pool_command, NULL, NULL, NULL, napi_default, NULL},
      {"listen", NULL, listen_command, NULL, NULL, NULL, napi_default, NULL},
      {"unlisten", NULL, unlisten_command, NULL, NULL, NULL, napi_default, NULL},
      {"learn", NULL, learn_command, NULL, NULL, NULL, napi_default, NULL},
      {"forget", NULL, forget_command, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof methods / sizeof methods[0], methods);
  return exports;
}
