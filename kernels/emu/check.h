// The tally the emulation test programs share: each check counts as passed or failed (printing
// what failed), and `finish` prints the "N passed, M failed" line tests/gpu.rs looks for.
#pragma once

#include <cstdio>
#include <string>

namespace emu_check {

inline int passed = 0, failed = 0;

inline void check(bool ok, const std::string& what) {
  if (ok) {
    ++passed;
  } else {
    ++failed;
    std::printf("FAIL: %s\n", what.c_str());
  }
}

// Exit status of the test program.
inline int finish() {
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

}  // namespace emu_check
