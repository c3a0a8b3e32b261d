import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { hostname, networkInterfaces } from 'node:os';
import { join } from 'node:path';

// The kubelet API's serving certificate. Given files are used as they are;
// without them a self-signed one is made once into the PKI folder and reused
// on every start, as kubelet does with /var/lib/kubelet/pki/kubelet.{crt,key}
// (CN = the node name, SANs = its host name and addresses, a year long).
// Made with the openssl CLI (Debian openssl): Node can read certificates but
// not issue them.

export interface ServingCert {
  cert: Buffer;
  key: Buffer;
  /** Where it came from, for the log. */
  certFile: string;
  generated: boolean;
}

/** The host's own addresses (not loopback's only: the API server dials the node by its InternalIP). */
export function hostAddresses(): string[] {
  const ips = new Set<string>(['127.0.0.1']);
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (!a.address.startsWith('fe80:')) ips.add(a.address);
  return [...ips];
}

function run(file: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile(file, args, (e, _out, err) => (e ? reject(new Error(`${file} ${args[0]}: ${err.trim() || e.message}`)) : resolve())),
  );
}

export async function servingCert(o: { certFile?: string; keyFile?: string; pkiDir: string; nodeName: string; openssl?: string }): Promise<ServingCert> {
  if (o.certFile || o.keyFile) {
    if (!o.certFile || !o.keyFile) throw new Error(`tls: ${o.certFile ? 'keyFile' : 'certFile'} is missing (give both certFile and keyFile, or neither for a self-signed certificate)`);
    const [cert, key] = await Promise.all([readFile(o.certFile), readFile(o.keyFile)]);
    return { cert, key, certFile: o.certFile, generated: false };
  }
  const certFile = join(o.pkiDir, 'kubelet.crt');
  const keyFile = join(o.pkiDir, 'kubelet.key');
  const existing = await Promise.all([readFile(certFile), readFile(keyFile)]).catch(() => undefined);
  if (existing) {
    const [cert, key] = existing;
    // One past its end is made anew, as kubelet would on its next start.
    const x = new X509Certificate(cert);
    if (Date.parse(x.validTo) > Date.now()) return { cert, key, certFile, generated: false };
  }
  await mkdir(o.pkiDir, { recursive: true, mode: 0o700 });
  const tmp = await mkdtemp(join(o.pkiDir, '.new-'));
  try {
    const host = hostname();
    const sans = [...new Set([host, o.nodeName])].map((d) => `DNS:${d}`).concat(hostAddresses().map((ip) => `IP:${ip}`));
    await run(o.openssl ?? 'openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '365',
      '-subj',
      `/CN=${o.nodeName.replace(/[/\\]/g, '\\$&')}`,
      '-addext',
      `subjectAltName=${sans.join(',')}`,
      '-addext',
      'extendedKeyUsage=serverAuth',
      '-keyout',
      join(tmp, 'kubelet.key'),
      '-out',
      join(tmp, 'kubelet.crt'),
    ]);
    await chmod(join(tmp, 'kubelet.key'), 0o600);
    // The key first: a certificate never lies beside a key of another.
    await rename(join(tmp, 'kubelet.key'), keyFile);
    await rename(join(tmp, 'kubelet.crt'), certFile);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return { cert: await readFile(certFile), key: await readFile(keyFile), certFile, generated: true };
}
