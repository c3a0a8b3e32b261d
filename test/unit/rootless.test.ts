import assert from 'node:assert/strict';
import { test } from 'node:test';

import { rootRefusal } from '../../cmd/agent/rootless.js';

test('run, enter and stop refuse root with a message that says why and what to do', () => {
  for (const cmd of ['run', 'enter', 'stop']) {
    const m = rootRefusal(0, cmd);
    assert.ok(m, `${cmd} accepted root`);
    assert.match(m, /refusing to run as root/);
    assert.match(m, /rootless by design/);
    assert.match(m, /host-setup\.sh/);
  }
});

test('check may run as root (to inspect the host), and ordinary users are never refused', () => {
  assert.equal(rootRefusal(0, 'check'), undefined);
  assert.equal(rootRefusal(1000, 'run'), undefined);
});
