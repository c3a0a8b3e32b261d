// Registry credentials from a pod's imagePullSecrets, as kubelet's
// credential keyring reads them: a kubernetes.io/dockerconfigjson secret
// ({"auths": {...}}) or a legacy kubernetes.io/dockercfg one ({...}), each
// entry keyed by a registry host, optionally with a scheme and a path
// ("https://index.docker.io/v1/", "registry:5000/team"). An image matches an
// entry when the hosts are the same and the entry's path, if any, is a prefix
// of the image's repository; longer paths win. The runtime gets the matches
// one at a time (kubelet tries each until a pull succeeds), then none.

export interface RegistryAuth {
  username?: string;
  password?: string;
  auth?: string;
  serverAddress: string;
  identityToken?: string;
  registryToken?: string;
}

type Entry = { username?: string; password?: string; auth?: string; identitytoken?: string; registrytoken?: string };

/** The registry host and repository path of an image reference, Docker's defaults filled in. */
export function imageLocation(image: string): { host: string; path: string } {
  const name = image.split('@')[0]!;
  const slash = name.indexOf('/');
  const first = slash < 0 ? '' : name.slice(0, slash);
  const isHost = first.includes('.') || first.includes(':') || first === 'localhost';
  const host = isHost ? first : 'docker.io';
  let path = isHost ? name.slice(slash + 1) : name;
  // The tag is not part of the repository.
  path = path.replace(/:[^/]*$/, '');
  if (host === 'docker.io' && !path.includes('/')) path = `library/${path}`;
  return { host, path };
}

function entryLocation(key: string): { host: string; path: string } {
  const k = key.replace(/^[a-z]+:\/\//, '').replace(/\/+$/, '');
  const slash = k.indexOf('/');
  let host = slash < 0 ? k : k.slice(0, slash);
  let path = slash < 0 ? '' : k.slice(slash + 1);
  // Docker Hub's historical names; an API version (docker login's https://host/v1/) is no repository path.
  if (host === 'index.docker.io' || host === 'registry-1.docker.io') host = 'docker.io';
  if (path === 'v1' || path === 'v2') path = '';
  return { host, path };
}

/** The entries of one secret's data, whichever of the two formats it has; malformed content gives none. */
function entriesOf(data: Record<string, Buffer>): Array<[string, Entry]> {
  const parse = (b: Buffer | undefined): unknown => {
    if (!b) return undefined;
    try {
      return JSON.parse(b.toString('utf8')) as unknown;
    } catch {
      return undefined;
    }
  };
  const json = parse(data['.dockerconfigjson']) as { auths?: Record<string, Entry> } | undefined;
  const legacy = parse(data['.dockercfg']) as Record<string, Entry> | undefined;
  const map = json?.auths ?? legacy ?? {};
  return Object.entries(map).filter(([, e]) => typeof e === 'object' && e !== null);
}

/** Credentials for `image` from the secrets, best match first. */
export function pullAuthsFor(image: string, secrets: ReadonlyArray<{ data: Record<string, Buffer> }>): RegistryAuth[] {
  const want = imageLocation(image);
  const matches: Array<{ score: number; auth: RegistryAuth }> = [];
  for (const s of secrets) {
    for (const [key, e] of entriesOf(s.data)) {
      const loc = entryLocation(key);
      if (loc.host !== want.host) continue;
      if (loc.path !== '' && want.path !== loc.path && !want.path.startsWith(`${loc.path}/`)) continue;
      let username = e.username;
      let password = e.password;
      if ((!username || !password) && e.auth) {
        const decoded = Buffer.from(e.auth, 'base64').toString('utf8');
        const colon = decoded.indexOf(':');
        if (colon > 0) {
          username = decoded.slice(0, colon);
          password = decoded.slice(colon + 1);
        }
      }
      matches.push({
        score: loc.path.length,
        auth: {
          serverAddress: loc.host,
          ...(username ? { username } : {}),
          ...(password ? { password } : {}),
          ...(e.identitytoken ? { identityToken: e.identitytoken } : {}),
          ...(e.registrytoken ? { registryToken: e.registrytoken } : {}),
        },
      });
    }
  }
  return matches.sort((a, b) => b.score - a.score).map((m) => m.auth);
}
