import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { parseManifest } from '../../pkg/node/pod_manifest.js';
import { criContainerSecurity, criSandboxSecurity, nonRootProblem } from '../../pkg/node/security_context.js';

// securityContext as kubelet hands it to the CRI: the container's settings
// over the pod's, groups shared, refusals named by field.

const pod = (spec: string) => parseManifest(`apiVersion: v1\nkind: Pod\nmetadata: { name: p }\nspec:\n${spec}`, '/m/p.yaml')[0]!;
const refused = (spec: string, field: RegExp): void =>
  assert.throws(() => pod(spec), (e: Error & { field?: string }) => {
    assert.match(e.field ?? '', field);
    return true;
  });

describe('securityContext', () => {
  test("the container's user wins over the pod's; groups, fsGroup and sysctls come from the pod", () => {
    const p = pod(`  securityContext: { runAsUser: 1000, runAsGroup: 3000, fsGroup: 2000, supplementalGroups: [4000], sysctls: [{ name: net.ipv4.ip_unprivileged_port_start, value: "0" }] }
  containers:
    - name: c
      image: b
      securityContext: { runAsUser: 1001, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: [ALL], add: [NET_BIND_SERVICE] }, seccompProfile: { type: RuntimeDefault } }
`);
    const c = p.containers[0]!;
    assert.deepEqual(criContainerSecurity(p.security, c.security), {
      capabilities: { addCapabilities: ['NET_BIND_SERVICE'], dropCapabilities: ['ALL'] },
      runAsUser: { value: 1001 },
      runAsGroup: { value: 3000 },
      readonlyRootfs: true,
      supplementalGroups: [4000, 2000],
      noNewPrivs: true,
      seccomp: { profileType: 'RuntimeDefault' },
    });
    const sb = criSandboxSecurity(p.security);
    assert.deepEqual(sb.sysctls, { 'net.ipv4.ip_unprivileged_port_start': '0' });
    assert.deepEqual((sb.securityContext as { runAsUser: unknown }).runAsUser, { value: 1000 });
  });

  test('no securityContext: nothing asked of the runtime beyond its defaults', () => {
    const p = pod('  containers: [{ name: c, image: b }]\n');
    assert.deepEqual(criContainerSecurity(p.security, p.containers[0]!.security), { capabilities: { addCapabilities: [], dropCapabilities: [] }, readonlyRootfs: false, supplementalGroups: [], noNewPrivs: false });
  });

  test('what a rootless node cannot give is refused by field', () => {
    refused('  containers: [{ name: c, image: b, securityContext: { privileged: true } }]\n', /spec\.containers\[0\]\.securityContext\.privileged/);
    refused('  containers: [{ name: c, image: b, securityContext: { procMount: Unmasked } }]\n', /securityContext\.procMount/);
    refused('  containers: [{ name: c, image: b, securityContext: { appArmorProfile: { type: Localhost, localhostProfile: x } } }]\n', /appArmorProfile\.type/);
    refused('  securityContext: { runAsUser: -1 }\n  containers: [{ name: c, image: b }]\n', /spec\.securityContext\.runAsUser/);
    refused('  securityContext: { runAsNonRoot: true, runAsUser: 0 }\n  containers: [{ name: c, image: b }]\n', /spec\.securityContext\.runAsUser/);
    refused('  containers: [{ name: c, image: b, securityContext: { capabilities: { add: ["net admin"] } } }]\n', /capabilities\.add/);
  });

  test("runAsNonRoot is checked against the user the container will run as, the image's if none is set", () => {
    const p = pod('  securityContext: { runAsNonRoot: true }\n  containers: [{ name: c, image: b }]\n');
    const c = p.containers[0]!.security;
    assert.match(nonRootProblem(p.security, c, { uid: 0 })!, /image will run as root/);
    assert.equal(nonRootProblem(p.security, c, { uid: 1000 }), undefined);
    assert.match(nonRootProblem(p.security, c, { username: 'app' })!, /non-numeric user \(app\)/);
    assert.equal(nonRootProblem(p.security, { ...c, runAsUser: 10 }, { uid: 0 }), undefined, "the securityContext's user wins over the image's");
  });
});
