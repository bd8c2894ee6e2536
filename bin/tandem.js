#!/usr/bin/env node
// The published entry point: the compiled CLI lives in dist/ (built by `npm ci` via the prepare script).
import '../dist/cli/entry.js';
