// msgpackr loads this in a try/catch and decodes in JavaScript when it throws.
throw new Error('msgpackr-extract is not installed in this build');
