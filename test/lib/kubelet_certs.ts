import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';

// Certificates for kubelet API tests, made with the openssl CLI as an
// operator would: a client CA and client certificates it signs (CN = user,
// O = groups), and https requests that present them.

function openssl(args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => execFile('openssl', args, (e, _o, err) => (e ? reject(new Error(`openssl ${args[0]}: ${err}`)) : resolve())));
}

export interface CertFiles {
  cert: string;
  key: string;
}

/** A self-signed CA in `dir` named `name` (name.crt, name.key). */
export async function makeCA(dir: string, name: string): Promise<CertFiles> {
  const f = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-keyout', f.key, '-out', f.cert]);
  return f;
}

/** A client certificate signed by `ca`: CN = user, one O per group. */
export async function makeClientCert(dir: string, ca: CertFiles, user: string, groups: string[]): Promise<CertFiles> {
  const base = join(dir, user.replace(/[^\w.-]/g, '_'));
  const f = { cert: `${base}.crt`, key: `${base}.key` };
  const subj = `${groups.map((g) => `/O=${g}`).join('')}/CN=${user}`;
  await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', subj, '-keyout', f.key, '-out', `${base}.csr`]);
  await writeFile(`${base}.ext`, 'extendedKeyUsage=clientAuth\n');
  await openssl(['x509', '-req', '-in', `${base}.csr`, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '2', '-extfile', `${base}.ext`, '-out', f.cert]);
  return f;
}

export interface HttpsAnswer {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

/** An https request to the kubelet API, verifying its serving certificate against `serverCA`. */
export async function kubeletGet(
  url: string,
  o: { serverCA: string; client?: CertFiles; token?: string; method?: string; servername?: string },
): Promise<HttpsAnswer> {
  const [ca, cert, key] = await Promise.all([readFile(o.serverCA), o.client ? readFile(o.client.cert) : undefined, o.client ? readFile(o.client.key) : undefined]);
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: o.method ?? 'GET',
        ca,
        ...(cert && key ? { cert, key } : {}),
        ...(o.servername ? { servername: o.servername } : {}),
        headers: o.token ? { authorization: `Bearer ${o.token}` } : {},
        agent: false,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}
