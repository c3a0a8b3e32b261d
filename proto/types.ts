// The CRI message types the agent uses, re-exported from the generated code
// under their CRI names. `X` is what we send, `X__Output` what we receive.
export type { RuntimeServiceHandlers } from './generated/runtime/v1/RuntimeService.js';
export type { ImageServiceHandlers } from './generated/runtime/v1/ImageService.js';
export type { RuntimeServiceClient } from './generated/runtime/v1/RuntimeService.js';
export type { ImageServiceClient } from './generated/runtime/v1/ImageService.js';
export type { VersionResponse } from './generated/runtime/v1/VersionResponse.js';
export type { VersionRequest__Output } from './generated/runtime/v1/VersionRequest.js';
export type { StatusResponse } from './generated/runtime/v1/StatusResponse.js';
export type { StatusRequest__Output } from './generated/runtime/v1/StatusRequest.js';
export type { RuntimeCondition } from './generated/runtime/v1/RuntimeCondition.js';
export type { RuntimeConfigResponse } from './generated/runtime/v1/RuntimeConfigResponse.js';
export type { RuntimeHandler } from './generated/runtime/v1/RuntimeHandler.js';
export type { ImageFsInfoResponse } from './generated/runtime/v1/ImageFsInfoResponse.js';
export type { Image } from './generated/runtime/v1/Image.js';
export type { PullImageRequest__Output } from './generated/runtime/v1/PullImageRequest.js';
export type { PullImageResponse } from './generated/runtime/v1/PullImageResponse.js';
export type { ListImagesRequest__Output } from './generated/runtime/v1/ListImagesRequest.js';
export type { ListImagesResponse } from './generated/runtime/v1/ListImagesResponse.js';
export type { ImageStatusRequest__Output } from './generated/runtime/v1/ImageStatusRequest.js';
export type { ImageStatusResponse } from './generated/runtime/v1/ImageStatusResponse.js';
export type { RemoveImageRequest__Output } from './generated/runtime/v1/RemoveImageRequest.js';
export type { RemoveImageResponse } from './generated/runtime/v1/RemoveImageResponse.js';
