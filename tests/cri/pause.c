/* The sandbox's one process, behaving as Kubernetes' own pause (build/pause/linux/pause.c): hold the pod's
 * namespaces, reap orphans, leave with 0 on SIGINT or SIGTERM, warn when not the first process. Our own code,
 * built static by tests/cri/images.py for the test pause image (no registry is reachable). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void leave(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction stop = {.sa_handler = leave}, child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
    if (getpid() != 1) {
        fprintf(stderr, "Warning: pause should be the first process\n");
    }
    sigaction(SIGINT, &stop, NULL);
    sigaction(SIGTERM, &stop, NULL);
    sigaction(SIGCHLD, &child, NULL);
    for (;;) {
        pause();
    }
}
