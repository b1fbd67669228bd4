// ThreadSanitizer: ignoring the memory accesses of one call into an uninstrumented library (internal).
//
// A TsanIgnoreAccesses object, for its scope, makes ThreadSanitizer neither record nor check the
// plain reads and writes of the thread it lives on; synchronisation (mutexes, atomics through the
// runtime's interceptors) is still tracked, so no happens-before edge is lost. Outside a
// -fsanitize=thread build it is an empty object and costs nothing.
//
// Use it only around a call whose accesses are all to memory that hps code does not share between
// threads at that moment, when the library synchronises those accesses in a way ThreadSanitizer
// cannot see (atomics in code not built with -fsanitize=thread). Each use says why it is sound.
// Threading: per thread, scoped; not copyable.
#pragma once

#if defined(__SANITIZE_THREAD__)
#define HPS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HPS_TSAN 1
#endif
#endif

#if defined(HPS_TSAN)
// The dynamic-annotation entry points of the ThreadSanitizer runtime.
extern "C" {
void AnnotateIgnoreReadsBegin(const char* file, int line);
void AnnotateIgnoreReadsEnd(const char* file, int line);
void AnnotateIgnoreWritesBegin(const char* file, int line);
void AnnotateIgnoreWritesEnd(const char* file, int line);
}
#endif

namespace hps {

class TsanIgnoreAccesses {
 public:
#if defined(HPS_TSAN)
  TsanIgnoreAccesses() {
    AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
    AnnotateIgnoreWritesBegin(__FILE__, __LINE__);
  }
  ~TsanIgnoreAccesses() {
    AnnotateIgnoreWritesEnd(__FILE__, __LINE__);
    AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
  }
#else
  TsanIgnoreAccesses() = default;
#endif
  TsanIgnoreAccesses(const TsanIgnoreAccesses&) = delete;
  TsanIgnoreAccesses& operator=(const TsanIgnoreAccesses&) = delete;
};

}  // namespace hps
