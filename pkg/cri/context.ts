import type { ContainerEventResponse } from '../../proto/types.js';
import type { ImageService } from '../image/image_service.js';
import type { Snapshotter } from '../image/layer_store.js';
import type { Logger } from '../log/logger.js';
import type { StreamingServer } from '../streaming/server.js';
import type { ContainerRuntime } from './containers.js';
import type { EventBus } from './event_bus.js';
import type { PodRuntime } from './pods.js';

// What the CRI handlers may use. cmd/agent builds it from the real stores and
// drivers; unit tests build it from fakes.

export interface Condition {
  ready: boolean;
  /** CamelCase reason when not ready, as kubelet shows it. */
  reason: string;
  message: string;
}

export interface RuntimeHealth {
  runtime: Condition;
  network: Condition;
}

export interface CriContext {
  log: Logger;
  /** usernode's own version (Version.runtime_version). */
  version: string;
  cgroupDriver: 'CGROUPFS' | 'SYSTEMD';
  /** The conditions Status reports, worked out afresh on each call. */
  health(): Promise<RuntimeHealth>;
  /** Status verbose info: key → JSON text, as containerd's `crictl info` shows. */
  verboseInfo(): Promise<Record<string, string>>;
  /** False while the runtime half starts or stops; RPCs other than Version and Status get UNAVAILABLE. */
  ready(): boolean;
  images: ImageService;
  pods: PodRuntime;
  containers: ContainerRuntime;
  /** Container and pod lifecycle events, for GetContainerEvents (container_events.ts publishes them). */
  events: EventBus<ContainerEventResponse>;
  snapshotter: Snapshotter;
  /** Where images and container snapshots live (ImageFsInfo). */
  dirs: { images: string; snapshots: string };
  /** Runtime handler features (Status.runtime_handlers). */
  features: { userNamespaces: boolean; recursiveReadOnlyMounts: boolean };
  /** The streaming server Exec, Attach and PortForward hand out URLs of. */
  streaming: Pick<StreamingServer, 'url'>;
  /**
   * Test-only fault injection (crash_recovery.test.ts): called between the
   * side effects of the RPCs that change state, with the step's name; the
   * hook may end the process there (SIGKILL). Absent in production.
   */
  crashPoint?: (step: string) => void;
}
