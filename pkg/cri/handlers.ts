import { importImage } from './admin_image_import.js';
import { createContainer } from './container_create.js';
import { attach } from './container_attach.js';
import { exec } from './container_exec.js';
import { getContainerEvents } from './container_events.js';
import { execSync } from './container_exec_sync.js';
import { listContainers } from './container_list.js';
import { reopenContainerLog } from './container_log_reopen.js';
import { removeContainer } from './container_remove.js';
import { startContainer } from './container_start.js';
import { containerStats } from './container_stats.js';
import { listContainerStats } from './container_stats_list.js';
import { containerStatus } from './container_status.js';
import { stopContainer } from './container_stop.js';
import { updateContainerResources } from './container_update_resources.js';
import { imageFsInfo } from './image_fs_info.js';
import { listImages } from './image_list.js';
import { pullImage } from './image_pull.js';
import { removeImage } from './image_remove.js';
import { imageStatus } from './image_status.js';
import type { StreamingHandler, UnaryHandler } from './instrumented.js';
import { listMetricDescriptors } from './metric_descriptors_list.js';
import { runtimeConfig } from './runtime_config.js';
import { updateRuntimeConfig } from './runtime_config_update.js';
import { listPodSandbox } from './sandbox_list.js';
import { listPodSandboxMetrics } from './sandbox_metrics_list.js';
import { removePodSandbox } from './sandbox_remove.js';
import { runPodSandbox } from './sandbox_run.js';
import { portForward } from './sandbox_port_forward.js';
import { podSandboxStats } from './sandbox_stats.js';
import { listPodSandboxStats } from './sandbox_stats_list.js';
import { podSandboxStatus } from './sandbox_status.js';
import { stopPodSandbox } from './sandbox_stop.js';
import { updatePodSandboxResources } from './sandbox_update_resources.js';
import { status } from './status.js';
import { version } from './version.js';

// The registry of built RPCs, one file each. Every RPC of the two services
// that is not listed here answers UNIMPLEMENTED with its name (server.ts).

export const runtimeServiceHandlers: Readonly<Record<string, UnaryHandler>> = {
  Version: version,
  Status: status,
  RuntimeConfig: runtimeConfig,
  UpdateRuntimeConfig: updateRuntimeConfig,
  RunPodSandbox: runPodSandbox,
  StopPodSandbox: stopPodSandbox,
  RemovePodSandbox: removePodSandbox,
  PodSandboxStatus: podSandboxStatus,
  ListPodSandbox: listPodSandbox,
  UpdatePodSandboxResources: updatePodSandboxResources,
  CreateContainer: createContainer,
  StartContainer: startContainer,
  StopContainer: stopContainer,
  RemoveContainer: removeContainer,
  ContainerStatus: containerStatus,
  ListContainers: listContainers,
  ExecSync: execSync,
  Exec: exec,
  Attach: attach,
  PortForward: portForward,
  ContainerStats: containerStats,
  ListContainerStats: listContainerStats,
  PodSandboxStats: podSandboxStats,
  ListPodSandboxStats: listPodSandboxStats,
  ReopenContainerLog: reopenContainerLog,
  ListMetricDescriptors: listMetricDescriptors,
  ListPodSandboxMetrics: listPodSandboxMetrics,
  UpdateContainerResources: updateContainerResources,
};

/** The server-streaming RPCs of RuntimeService that are built. */
export const runtimeServiceStreamingHandlers: Readonly<Record<string, StreamingHandler>> = {
  GetContainerEvents: getContainerEvents,
};

export const imageServiceHandlers: Readonly<Record<string, UnaryHandler>> = {
  ImageFsInfo: imageFsInfo,
  PullImage: pullImage,
  ListImages: listImages,
  ImageStatus: imageStatus,
  RemoveImage: removeImage,
};

/** usernode's own ImageAdmin service (proto/usernode/v1/admin.proto). */
export const imageAdminHandlers: Readonly<Record<string, UnaryHandler>> = {
  ImportImage: importImage,
};
