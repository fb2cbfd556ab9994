/*
 * A minimal libwebsockets echo server: the baseline of benches/shutdown.rs.
 *
 *   echo PORT [polite]
 *
 * Listens on 127.0.0.1:PORT, accepts WebSocket connections with no subprotocol (the first protocol
 * in the list is the default) and sends every message back. Prints "listening" on stderr when
 * ready. On SIGTERM or SIGINT it leaves the service loop and tears down with lws_context_destroy,
 * the usual libwebsockets shutdown, then exits.
 *
 * With "polite", it first tells every client: each connection is asked for a writeable callback,
 * which sets the close reason (1001 Going Away) and closes, so libwebsockets sends the close frame and
 * waits for the client's answer; the service loop runs until every connection has closed (at most
 * 2 s), then the context is destroyed. This is the libwebsockets way to do what hydrogen-ws does.
 *
 * Built by the bench with: cc -O2 -o echo echo.c $(pkg-config --cflags --libs libwebsockets)
 */
#include <libwebsockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One received chunk waiting to be written back, with the write flags that reproduce its framing. */
struct chunk {
	struct chunk *next;
	size_t len;
	int flags;
	unsigned char data[]; /* LWS_PRE bytes of headroom, then the payload */
};

struct session {
	struct chunk *head, *tail;
	size_t queued;
	int paused;
};

/* Beyond this many queued bytes a connection stops reading until the queue drains. */
#define MAX_QUEUED (256 * 1024)

static volatile sig_atomic_t interrupted;
static struct lws_context *context;
/* Established connections not yet closed. */
static int live;

static void free_queue(struct session *s)
{
	while (s->head) {
		struct chunk *c = s->head;
		s->head = c->next;
		free(c);
	}
	s->tail = NULL;
	s->queued = 0;
}

static int callback_echo(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
			 size_t len)
{
	struct session *s = user;
	struct chunk *c;
	int flags;

	switch (reason) {
	case LWS_CALLBACK_ESTABLISHED:
		memset(s, 0, sizeof(*s));
		live++;
		break;

	case LWS_CALLBACK_RECEIVE:
		c = malloc(sizeof(*c) + LWS_PRE + len);
		if (!c)
			return -1;
		c->next = NULL;
		c->len = len;
		if (len)
			memcpy(c->data + LWS_PRE, in, len);
		flags = lws_frame_is_binary(wsi) ? LWS_WRITE_BINARY : LWS_WRITE_TEXT;
		if (!lws_is_first_fragment(wsi))
			flags = LWS_WRITE_CONTINUATION;
		if (!lws_is_final_fragment(wsi))
			flags |= LWS_WRITE_NO_FIN;
		c->flags = flags;
		if (s->tail)
			s->tail->next = c;
		else
			s->head = c;
		s->tail = c;
		s->queued += len;
		if (s->queued > MAX_QUEUED && !s->paused) {
			s->paused = 1;
			lws_rx_flow_control(wsi, 0);
		}
		lws_callback_on_writable(wsi);
		break;

	case LWS_CALLBACK_SERVER_WRITEABLE:
		if (interrupted) {
			static const char why[] = "server shutting down";
			lws_close_reason(wsi, LWS_CLOSE_STATUS_GOINGAWAY, (unsigned char *)why,
					 sizeof(why) - 1);
			return -1;
		}
		c = s->head;
		if (!c)
			break;
		if (lws_write(wsi, c->data + LWS_PRE, c->len, (enum lws_write_protocol)c->flags) <
		    (int)c->len)
			return -1;
		s->head = c->next;
		if (!s->head)
			s->tail = NULL;
		s->queued -= c->len;
		free(c);
		if (s->paused && s->queued <= MAX_QUEUED / 2) {
			s->paused = 0;
			lws_rx_flow_control(wsi, 1);
		}
		if (s->head)
			lws_callback_on_writable(wsi);
		break;

	case LWS_CALLBACK_CLOSED:
		free_queue(s);
		live--;
		break;

	default:
		break;
	}
	return 0;
}

static const struct lws_protocols protocols[] = {
	{ "echo", callback_echo, sizeof(struct session), 4096, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 },
};

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
	if (context)
		lws_cancel_service(context);
}

int main(int argc, char **argv)
{
	struct lws_context_creation_info info;
	struct sigaction sa;
	int port;

	int polite = argc == 3 && strcmp(argv[2], "polite") == 0;

	if ((argc != 2 && !polite) || (port = atoi(argv[1])) <= 0 || port > 65535) {
		fprintf(stderr, "usage: %s PORT [polite]\n", argv[0]);
		return 2;
	}
	lws_set_log_level(LLL_ERR, NULL);

	memset(&info, 0, sizeof(info));
	info.port = port;
	info.iface = "127.0.0.1";
	info.protocols = protocols;
	info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
	/* fd_limit_per_thread 0: lws sizes its fd table from RLIMIT_NOFILE, which the bench raised. */
	info.fd_limit_per_thread = 0;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	context = lws_create_context(&info);
	if (!context) {
		fprintf(stderr, "lws_create_context failed\n");
		return 1;
	}
	fprintf(stderr, "listening on 127.0.0.1:%d\n", port);

	while (!interrupted)
		if (lws_service(context, 0) < 0)
			break;

	if (polite) {
		struct timespec start, now;

		clock_gettime(CLOCK_MONOTONIC, &start);
		lws_callback_on_writable_all_protocol(context, &protocols[0]);
		while (live > 0) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec - start.tv_sec >= 2)
				break;
			if (lws_service(context, 0) < 0)
				break;
		}
	}
	lws_context_destroy(context);
	return 0;
}
