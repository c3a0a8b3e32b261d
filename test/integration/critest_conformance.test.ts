import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { type AgentProcess, exec, repoRoot, requiredEnv, requiredTool, TestNode, usernodeBin } from '../lib/agent.js';

// critest as the CRI's own conformance suite: every spec listed in
// test/critest/passing.txt runs against the real agent and must pass. The
// list only grows: a spec that once passed and fails now is a regression.
// critest runs inside the node namespace (`usernode enter`), where a kubelet
// driving this runtime runs too: the pod IPs, the node's own network (hostNetwork
// pods) and its mount namespace (the mounts critest makes to check mount
// propagation) are there; from the host they are not, by design.

const listed = readFileSync(join(repoRoot, 'test', 'critest', 'passing.txt'), 'utf8')
  .split('\n')
  .filter((l) => l.trim() !== '' && !l.startsWith('#'));

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

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

  it(`passes all ${listed.length} listed critest specs`, async (t) => {
    const endpoint = `unix://${node.socket}`;
    const report = join(node.dir, 'critest-report.json');
    const r = await exec(
      process.execPath,
      [
        usernodeBin,
        'enter',
        '--',
        requiredTool('USERNODE_CRITEST'),
        '--runtime-endpoint', endpoint,
        '--image-endpoint', endpoint,
        '--test-images-file', bed.critest.testImagesFile,
        `--ginkgo.focus=${listed.map(escape).join("|")}`,
        `--ginkgo.json-report=${report}`,
        '--ginkgo.no-color',
      ],
      { env: node.env, timeoutMs: 1200000 },
    );
    const specs = (JSON.parse(readFileSync(report, 'utf8')) as Report[])[0]!.SpecReports.filter((s) => s.LeafNodeType === 'It');
    const text = (s: (typeof specs)[number]): string => [...s.ContainerHierarchyTexts, s.LeafNodeText].join(' ');
    const ran = specs.filter((s) => s.State !== 'skipped');
    const passed = ran.filter((s) => s.State === 'passed');
    const failed = ran.filter((s) => s.State !== 'passed');
    t.diagnostic(`critest: ran ${ran.length}, passed ${passed.length}, failed ${failed.length} (of ${specs.length} specs in critest v1.37.0)`);
    assert.deepEqual(
      failed.map((s) => `${text(s)}: ${s.Failure?.Message.split('\n')[0] ?? s.State}`),
      [],
      'critest specs that passed before fail now',
    );
    const missing = listed.filter((l) => !ran.some((s) => text(s) === l));
    assert.deepEqual(missing, [], 'listed specs that critest did not run (renamed upstream?)');
    assert.equal(r.code, 0, r.stdout.slice(-3000));
  });
});
