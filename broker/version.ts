/** The release this code is; a unit test keeps it equal to package.json's version. */
export const SLUICE_VERSION = '0.1.0';
