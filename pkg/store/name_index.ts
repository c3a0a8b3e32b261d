import { alreadyExists } from '../errdefs/errors.js';

// Names reserved for the id that will carry them, as containerd's
// reserveSandboxName / reserveContainerName: the reservation is taken at the
// start of RunPodSandbox / CreateContainer, synchronously, so of two
// concurrent requests for one name exactly one gets it, before either has made
// anything; the loser answers ALREADY_EXISTS at once. A failed request
// releases its name; a record's name is held until the record is deleted.

export class NameIndex {
  private readonly owners = new Map<string, string>();

  constructor(
    /** What is named, for the error message ("pod sandbox", "container"). */
    private readonly what: string,
  ) {}

  /** Throws AlreadyExists (field config.metadata) when `key` is held by another id. Idempotent for the same id. */
  reserve(key: string, id: string): void {
    const owner = this.owners.get(key);
    if (owner !== undefined && owner !== id) {
      throw alreadyExists(`a ${this.what} named ${key} already exists (${owner}); remove it first`, { field: 'config.metadata' });
    }
    this.owners.set(key, id);
  }

  /** Releases `key` if `id` holds it (a late release never frees a name someone else took since). */
  release(key: string, id: string): void {
    if (this.owners.get(key) === id) this.owners.delete(key);
  }

  /** Releases whatever name `id` holds. */
  releaseId(id: string): void {
    for (const [k, v] of this.owners) if (v === id) this.owners.delete(k);
  }

  ownerOf(key: string): string | undefined {
    return this.owners.get(key);
  }
}
