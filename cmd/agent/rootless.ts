// usernode is rootless by design: every command but `check` refuses root, so
// nobody runs a node as root by accident and believes it is rootless.

export function rootRefusal(uid: number | undefined, command: string): string | undefined {
  if (uid !== 0 || command === 'check') return undefined;
  return (
    `usernode ${command}: refusing to run as root: usernode is rootless by design.\n` +
    'Run it as an ordinary user; set the host up once with: sudo scripts/host-setup.sh USER\n'
  );
}
