/*
 * A stand-in for nginx in the test images: busybox httpd serving
 * /usr/share/nginx/html on $NGINX_PORT (default 80), run by a process that looks
 * like nginx's master from outside: its name is "nginx" (pidof finds it), its
 * command line reads "nginx: master process ..." (critest greps /proc/1/cmdline
 * for it) and its pid is in /var/run/nginx.pid. A shell script cannot rename its
 * own command line, hence C. TERM, INT and QUIT stop httpd and exit 0.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char master[] = "nginx: master process nginx -g daemon off;";
static volatile pid_t child = -1;

static void stop(int sig) {
  (void)sig;
  if (child > 0) kill(child, SIGTERM);
  _exit(0);
}

int main(int argc, char **argv) {
  (void)argc;
  if (strcmp(argv[0], master) != 0) {
    /* Once more under the master's name: the kernel takes the process name from
       the path, so it stays "nginx". */
    char *args[] = {(char *)master, NULL};
    execv("/usr/sbin/nginx", args);
    perror("nginx: re-exec /usr/sbin/nginx");
    return 1;
  }
  const char *port = getenv("NGINX_PORT");
  if (port == NULL || *port == '\0') port = "80";
  FILE *f = fopen("/var/run/nginx.pid", "w");
  if (f != NULL) {
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
  }
  signal(SIGTERM, stop);
  signal(SIGINT, stop);
  signal(SIGQUIT, stop);
  printf("nginx (busybox httpd) listening on port %s\n", port);
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) {
    perror("nginx: fork");
    return 1;
  }
  if (pid == 0) {
    execl("/bin/busybox", "httpd", "-f", "-p", port, "-h", "/usr/share/nginx/html", (char *)NULL);
    perror("nginx: exec busybox httpd");
    _exit(127);
  }
  child = pid;
  /* As PID 1 it also reaps whatever else ends up parented to it. */
  for (;;) {
    int status;
    pid_t done = wait(&status);
    if (done == child) return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    if (done < 0) return 1;
  }
}
