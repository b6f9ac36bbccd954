/** Does nothing: the callback for an ending nobody waits on, and the error listener of a socket about to close. */
export function noop (): void {}
