/*
 * The nonewprivs test image's program (as in Kubernetes' e2e image of that
 * name): installed set-user-ID root and run as an ordinary user, it prints the
 * effective uid it got. 0 means the set-user-ID bit took effect; with
 * no_new_privs set it cannot, and the user's own uid is printed.
 */
#include <stdio.h>
#include <unistd.h>

int main(void) {
  printf("Effective uid: %d\n", (int)geteuid());
  return 0;
}
