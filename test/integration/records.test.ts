import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { type AgentProcess, TestNode } from '../lib/agent.js';

// A record that will not parse (a torn write of an older build, a disk error,
// a hand edit) is moved aside at the next start and reported — in the log, in
// `crictl info` and in a metric — never deleted: it may be the only pointer to
// a pod's network namespace, IP lease and rootfs. The records that parse load
// as before, and a crash's leftover temp files are cleaned.

describe('usernode records: unparsable ones are moved aside and reported', () => {
  let node: TestNode;
  let agent: AgentProcess;

  before(async () => {
    node = await TestNode.create();
    agent = node.start();
    await agent.ready();
  });

  after(async () => {
    agent?.child.kill('SIGTERM');
    await node?.destroy();
  });

  it('keeps the torn records in corrupt/, names them in crictl info, the log and the metric, and loads the rest', async () => {
    const podFile = join(node.dir, 'pod.json');
    await writeFile(podFile, JSON.stringify({ metadata: { name: 'keeper', namespace: 'default', uid: 'uid-keeper', attempt: 0 }, log_directory: join(node.dir, 'logs'), linux: {} }));
    const runp = await node.crictl(['runp', podFile]);
    assert.equal(runp.code, 0, runp.stderr);
    const keeper = runp.stdout.trim();
    agent.child.kill('SIGTERM');
    assert.equal((await agent.exited).code, 0);

    const data = join(node.dir, 'data', 'usernode');
    const tornPod = join(data, 'pods', 'sandboxes', `${'a'.repeat(64)}.json`);
    const tornContainer = join(data, 'pods', 'containers', `${'b'.repeat(64)}.json`);
    const leftover = join(data, 'pods', 'sandboxes', `.${keeper}.json.4242.0123456789ab.tmp`);
    await writeFile(tornPod, `{"id":"${'a'.repeat(64)}","metadata":{"name":"lost"`);
    await writeFile(tornContainer, '');
    await writeFile(leftover, '{"id":');

    agent = node.start();
    await agent.ready();

    const pods = await node.crictl(['pods', '-q']);
    assert.equal(pods.code, 0, pods.stderr);
    assert.deepEqual(pods.stdout.trim().split('\n'), [keeper], 'the record that parses is loaded, and only it');
    assert.equal(existsSync(tornPod) || existsSync(tornContainer), false, 'the torn records are out of the way');
    assert.equal(existsSync(leftover), false, 'a temp file of a crash is removed');
    const kept = [...(await readdir(join(data, 'pods', 'sandboxes', 'corrupt'))), ...(await readdir(join(data, 'pods', 'containers', 'corrupt')))];
    assert.equal(kept.filter((n) => n.startsWith(`${'a'.repeat(64)}.json.`) || n.startsWith(`${'b'.repeat(64)}.json.`)).length, 2, `corrupt/ keeps both: ${kept.join(', ')}`);

    const info = await node.crictl(['info']);
    assert.equal(info.code, 0, info.stderr);
    const shown = (JSON.parse(info.stdout) as Record<string, unknown>).recordsMovedAside;
    const list = (typeof shown === 'string' ? JSON.parse(shown) : shown) as Array<{ file: string; movedTo: string }>;
    assert.deepEqual(list.map((m) => m.file).sort(), [tornContainer, tornPod].sort(), `crictl info: ${JSON.stringify(shown)}`);
    assert.match(agent.log, /a record did not parse and was moved aside/);

    const metrics = await (await fetch(agent.metricsUrl)).text();
    assert.match(metrics, /^usernode_records_moved_aside 2$/m);
  });
});
