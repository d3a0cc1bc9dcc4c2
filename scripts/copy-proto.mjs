#!/usr/bin/env node
// Copies proto/ next to the compiled code (dist/proto), where dist/src/**/*.js looks for it
// (the same relative path as from src/). Run by `npm run build` after tsc.
import { cpSync } from 'node:fs';

cpSync('proto', 'dist/proto', { recursive: true });
