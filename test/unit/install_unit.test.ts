import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { systemdWord, unitDir, unitText } from '../../cmd/agent/install.js';

// The systemd user unit `usernode install` writes, as text: words quoted and
// escaped as systemd.syntax(7) and systemd.service(5) read them (the integration
// test hands the whole file to systemd-analyze verify).

describe('usernode install: the unit text', () => {
  test('words: plain ones as they are; spaces and quotes quoted; % doubled; $ doubled on a command line only', () => {
    assert.equal(systemdWord('/usr/bin/node'), '/usr/bin/node');
    assert.equal(systemdWord('--node-name=a,b'), '--node-name=a,b');
    assert.equal(systemdWord('/home/u/my node'), '"/home/u/my node"');
    assert.equal(systemdWord('100%'), '100%%');
    assert.equal(systemdWord('$HOME/x'), '"$$HOME/x"');
    assert.equal(systemdWord('PATH=$x', false), '"PATH=$x"');
    assert.equal(systemdWord('a"b\\c'), '"a\\"b\\\\c"');
    assert.equal(systemdWord(''), '""');
  });

  test("the unit: ExecStart runs the agent's run by absolute paths with the flags; Delegate, KillMode=process, Restart=on-failure; no ExecStop", () => {
    const text = unitText({ node: '/usr/bin/node', script: '/opt/usernode/bin/usernode', runArgs: ['--kubeconfig', '/home/u/node.kubeconfig'], environment: { PATH: '/usr/bin:/bin' } });
    assert.match(text, /^ExecStart=\/usr\/bin\/node \/opt\/usernode\/bin\/usernode run --kubeconfig \/home\/u\/node\.kubeconfig$/m);
    assert.match(text, /^Environment=PATH=\/usr\/bin:\/bin$/m);
    for (const line of ['Type=exec', 'Delegate=yes', 'KillMode=process', 'Restart=on-failure', 'WantedBy=default.target']) assert.match(text, new RegExp(`^${line}$`, 'm'));
    assert.doesNotMatch(text, /^ExecStop/m);
  });

  test('where: $XDG_CONFIG_HOME/systemd/user, else ~/.config/systemd/user', () => {
    assert.equal(unitDir({ XDG_CONFIG_HOME: '/c', HOME: '/h' }), '/c/systemd/user');
    assert.equal(unitDir({ HOME: '/h' }), '/h/.config/systemd/user');
  });
});
