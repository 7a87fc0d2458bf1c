/* The lab's sandbox image entrypoint: what rancher/mirrored-pause's /pause does. It sleeps in
 * pause() until SIGINT or SIGTERM and then exits 0; it reaps children like an init would. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }

int main(void) {
    signal(SIGINT, stop);
    signal(SIGTERM, stop);
    signal(SIGCHLD, reap);
    for (;;) pause();
    return 0;
}
