import { createContext, useContext } from 'react';

/** The bearer token of whoever views the messages (for upload and signed links). */
export const AttachmentToken = createContext<() => string | null>(() => null);

export const useAttachmentToken = () => useContext(AttachmentToken);
