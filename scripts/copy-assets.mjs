// Copies the non-TypeScript files the compiled service reads at run time (the Lua scripts) into dist/.
import { cpSync } from 'node:fs';

cpSync('src/store/redis/lua', 'dist/src/store/redis/lua', { recursive: true });
