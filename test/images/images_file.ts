import { readFile } from 'node:fs/promises';

// images.json: what test/images/build.ts pushed to the test bed's registries,
// for tests to assert against. Written by the build step of `npm test`; its
// path reaches the tests as USERNODE_TEST_IMAGES.

export interface TestLayer {
  mediaType: string;
  /** Digest of the compressed blob. */
  digest: string;
  /** sha256 of the uncompressed tar (rootfs.diff_ids). */
  diffId: string;
  size: number;
}

export interface TestPlatformImage {
  platform: string;
  mediaType: string;
  manifestDigest: string;
  /** = the image id a runtime reports for this platform's image. */
  configDigest: string;
  layers: TestLayer[];
}

export interface TestImage {
  /** What to pull: host:port/repository:tag. */
  reference: string;
  registry: string;
  repository: string;
  tag: string;
  /** Pushed to the basic-auth registry: pulling needs the test bed's credentials. */
  auth: boolean;
  /** What this image is for. */
  role: string;
  /** Media type of what the tag resolves to (image manifest, OCI index or Docker manifest list). */
  mediaType: string;
  /** Digest of what the tag resolves to: the repo digest a runtime reports (`repository@digest`). */
  manifestDigest: string;
  /** The linux/amd64 image a pull on this host unpacks (the image itself when the tag names no index). */
  platformManifestDigest: string;
  /** The image id: the config digest of that linux/amd64 image. */
  configDigest: string;
  layers: TestLayer[];
  /** The image config's User, verbatim ("" when unset). */
  user: string;
  /** CRI Image.uid: the numeric part of User before ":" (null when User is empty or a name). */
  uid: number | null;
  /** CRI Image.username: User before ":" when it is not numeric, else "". */
  username: string;
  /** Every entry of the index, when the tag names one. */
  platforms?: TestPlatformImage[];
  /** The upstream names this image stands in for (served here at the same repository path, for a registry mirror). */
  upstream?: string[];
  /** What the unpacked root filesystem must (files: path → content) and must not (absent) contain. */
  expect?: { files?: Record<string, string>; absent?: string[] };
}

export interface TestImagesFile {
  registry: string;
  authRegistry: string;
  /** "user:password" for authRegistry. */
  authUser: string;
  critest: {
    /** For critest --test-images-file. */
    testImagesFile: string;
    /** Upstream registry host → the test mirror (same repository paths) that serves its critest images. */
    mirrors: Record<string, string>;
    /** Upstream references critest uses that the bed cannot serve, and why. */
    unavailable: Record<string, string>;
  };
  /** Keyed by `reference`. */
  images: Record<string, TestImage>;
}

/** The path of images.json; missing is a failure, never a skip. */
export function testImagesPath(): string {
  const p = process.env.USERNODE_TEST_IMAGES;
  if (!p) {
    throw new Error(
      'USERNODE_TEST_IMAGES is not set: run the tests with "npm test", which starts the test registries (scripts/testhost.sh up, as root) and builds and pushes the test images (test/images/build.ts)',
    );
  }
  return p;
}

export async function loadTestImages(): Promise<TestImagesFile> {
  return JSON.parse(await readFile(testImagesPath(), 'utf8')) as TestImagesFile;
}

/** The image pushed as `repository:tag` (on the auth registry when `auth`). */
export function findTestImage(f: TestImagesFile, repository: string, tag = 'latest', auth = false): TestImage {
  const ref = `${auth ? f.authRegistry : f.registry}/${repository}:${tag}`;
  const img = f.images[ref];
  if (!img) throw new Error(`images.json has no ${ref}`);
  return img;
}

/** CRI Image.uid / Image.username from a config's User, as containerd derives them. */
export function criUser(user: string): { uid: number | null; username: string } {
  if (user === '') return { uid: null, username: '' };
  const name = user.split(':')[0] ?? '';
  return /^\d+$/.test(name) ? { uid: Number(name), username: '' } : { uid: null, username: name };
}
