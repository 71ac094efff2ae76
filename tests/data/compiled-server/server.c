/* A small HTTP server, compiled statically in a gcc stage and run from a scratch image.
 * Reads $PORT, answers GET / and GET /healthz, and exits cleanly on SIGTERM. */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stopping = 0;

static void on_term(int sig) { (void)sig; stopping = 1; }

static void answer(int client) {
    char request[2048];
    ssize_t got = read(client, request, sizeof request - 1);
    if (got <= 0) return;
    request[got] = '\0';
    char body[128];
    int status = 200;
    if (strncmp(request, "GET /healthz ", 13) == 0) {
        snprintf(body, sizeof body, "ok\n");
    } else if (strncmp(request, "GET / ", 6) == 0) {
        snprintf(body, sizeof body, "hello from a static C server, uid %d\n", (int)getuid());
    } else {
        status = 404;
        snprintf(body, sizeof body, "not found\n");
    }
    char head[256];
    int length = snprintf(head, sizeof head,
                          "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                          "Connection: close\r\n\r\n",
                          status, status == 200 ? "OK" : "Not Found", strlen(body));
    if (write(client, head, length) < 0 || write(client, body, strlen(body)) < 0) return;
}

int main(void) {
    const char *port = getenv("PORT");
    struct sigaction term = {0};
    term.sa_handler = on_term;  /* no SA_RESTART: accept() returns EINTR and the loop ends */
    sigaction(SIGTERM, &term, NULL);
    signal(SIGPIPE, SIG_IGN);
    int server = socket(AF_INET, SOCK_STREAM, 0);
    int yes = 1;
    setsockopt(server, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(port ? atoi(port) : 8080);
    if (bind(server, (struct sockaddr *)&address, sizeof address) < 0 || listen(server, 64) < 0) {
        perror("listen");
        return 1;
    }
    printf("listening on %s\n", port ? port : "8080");
    fflush(stdout);
    while (!stopping) {
        int client = accept(server, NULL, NULL);
        if (client < 0) {
            if (errno == EINTR) continue;
            perror("accept");
            return 1;
        }
        answer(client);
        close(client);
    }
    printf("stopping on SIGTERM\n");
    fflush(stdout);
    close(server);
    return 0;
}
