// Shared by every unit test file (vite.config.ts `setupFiles`).
//
// Testing Library's findBy*/waitFor poll their condition for 1 s by default. CI runs these tests
// on a 2-core machine that may be busy (the Rust suites' builds and nodes share it), where a
// render can take longer than that; a wait is still a polled condition, only with a deadline
// that a loaded machine meets. A test that is wrong still fails, 5 s later.
import { configure } from '@testing-library/dom';

configure({ asyncUtilTimeout: 5000 });
