import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { type AgentProcess, exec, repoRoot, requiredEnv, requiredTool, TestNode, usernodeBin } from '../lib/agent.js';

// critest as the CRI's own conformance suite, all of it, against the real
// agent: every spec listed in test/critest/passing.txt must pass (the list only
// grows: a spec that once passed and fails now is a regression), and every
// other spec that runs and fails must be in test/critest/not_passing.txt with
// its reason. The counts and every reason are printed.
// critest runs inside the node namespace (`usernode enter`), where a kubelet
// driving this runtime runs too: the pod IPs, the node's own network (hostNetwork
// pods) and its mount namespace (the mounts critest makes to check mount
// propagation) are there; from the host they are not, by design.

const listed = readFileSync(join(repoRoot, 'test', 'critest', 'passing.txt'), 'utf8')
  .split('\n')
  .filter((l) => l.trim() !== '' && !l.startsWith('#'));

// The specs that run and do not pass, each with why (tab-separated): rootless
// limits of this host, features of later issues, test-image limits.
const known = new Map(
  readFileSync(join(repoRoot, 'test', 'critest', 'not_passing.txt'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith('#'))
    .map((l) => [l.slice(0, l.indexOf('\t')), l.slice(l.indexOf('\t') + 1)] as const),
);

interface Report {
  SpecReports: Array<{ LeafNodeType: string; LeafNodeText: string; ContainerHierarchyTexts: string[]; State: string; Failure?: { Message: string } }>;
}

describe('critest conformance (the specs usernode passes)', () => {
  let node: TestNode;
  let agent: AgentProcess;
  let bed: { registry: string; critest: { testImagesFile: string; mirrors: Record<string, string> } };

  before(async () => {
    bed = JSON.parse(readFileSync(requiredEnv('USERNODE_TEST_IMAGES'), 'utf8')) as typeof bed;
    node = await TestNode.create();
    const mirrors = Object.entries(bed.critest.mirrors)
      .map(([host, url]) => `  ${host}: { mirrors: ["${url}"] }`)
      .join('\n');
    await node.writeConfig(`registries:\n  "${bed.registry}": { plainHttp: true }\n${mirrors}\n`);
    agent = node.start();
    await agent.ready();
  });

  after(async () => {
    agent?.child.kill('SIGTERM');
    await node?.destroy();
  });

  /** critest inside the node namespace; resolves with its It specs from the JSON report. */
  const critest = async (name: string, extra: string[]): Promise<Report['SpecReports']> => {
    const endpoint = `unix://${node.socket}`;
    const report = join(node.dir, `critest-${name}.json`);
    await exec(
      process.execPath,
      [
        usernodeBin,
        'enter',
        '--',
        requiredTool('USERNODE_CRITEST'),
        '--runtime-endpoint', endpoint,
        '--image-endpoint', endpoint,
        '--test-images-file', bed.critest.testImagesFile,
        `--ginkgo.json-report=${report}`,
        '--ginkgo.no-color',
        ...extra,
      ],
      { env: node.env, timeoutMs: 2400000 },
    );
    return (JSON.parse(readFileSync(report, 'utf8')) as Report[])[0]!.SpecReports.filter((s) => s.LeafNodeType === 'It');
  };

  it(`runs all of critest: the ${listed.length} listed specs pass, every other outcome has its reason`, async (t) => {
    const specs = await critest('all', []);
    const text = (s: (typeof specs)[number]): string => [...s.ContainerHierarchyTexts, s.LeafNodeText].join(' ');
    const ran = specs.filter((s) => s.State !== 'skipped');
    const passed = ran.filter((s) => s.State === 'passed');
    const failed = ran.filter((s) => s.State !== 'passed');
    const skipped = specs.filter((s) => s.State === 'skipped');
    const firstLine = (s: (typeof specs)[number]): string => s.Failure?.Message.split('\n')[0]?.trim() || '(no reason given)';
    for (const s of failed) t.diagnostic(`not passing: ${text(s)} — ${known.get(text(s)) ?? `NEW: ${firstLine(s)}`}`);
    for (const s of skipped) t.diagnostic(`skipped by critest: ${text(s)} — ${firstLine(s)}`);
    t.diagnostic(`critest v1.37.0: ${specs.length} specs; ran ${ran.length}: passed ${passed.length}, not passing ${failed.length} (each with its reason above); skipped by critest ${skipped.length}`);
    assert.deepEqual(
      listed.filter((l) => !passed.some((s) => text(s) === l)).map((l) => {
        const s = specs.find((x) => text(x) === l);
        return `${l}: ${s ? `${s.State}: ${firstLine(s)}` : 'not run (renamed upstream?)'}`;
      }),
      [],
      'listed critest specs that do not pass',
    );
    assert.deepEqual(
      failed.filter((s) => !known.has(text(s))).map((s) => `${text(s)}: ${firstLine(s)}`),
      [],
      'critest specs that fail with no reason recorded in test/critest/not_passing.txt',
    );
  });

  it("passes critest's Streaming specs over WebSocket too (-websocket-exec, -websocket-attach, -websocket-portforward)", async (t) => {
    const specs = (await critest('websocket', ['--ginkgo.focus=Streaming', '-websocket-exec', '-websocket-attach', '-websocket-portforward'])).filter((s) => s.State !== 'skipped');
    const passed = specs.filter((s) => s.State === 'passed');
    t.diagnostic(`critest Streaming over WebSocket: ran ${specs.length}, passed ${passed.length}`);
    assert.ok(specs.length >= 5, `only ${specs.length} Streaming specs ran`);
    assert.deepEqual(
      specs.filter((s) => s.State !== 'passed').map((s) => `${[...s.ContainerHierarchyTexts, s.LeafNodeText].join(' ')}: ${s.Failure?.Message.split('\n')[0] ?? s.State}`),
      [],
    );
  });
});
