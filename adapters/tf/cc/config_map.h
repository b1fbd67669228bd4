// Where an op's config lives now: the config string baked into a graph, re-pointed at load time.
//
// A SavedModel carries the config path it was built with. At serving time the file may sit
// elsewhere; a mapping old -> new, set before the op first runs, redirects it:
//   - the environment variable HPS_TF_CONFIG_MAP="old=new;old2=new2" ("*=new" maps every path),
//     read on every resolve (so it may be set after the library is loaded);
//   - hps_tf_map_config(old, new) (what Python's hps.tf.set_config_path calls), which takes
//     precedence over the environment.
// Only file paths are mapped; JSON text (a string starting with '{') is used as it is.
//
// Ownership: strings are copied. Threading: every function may be called from any thread.
#ifndef HPS_TF_CONFIG_MAP_H_
#define HPS_TF_CONFIG_MAP_H_

#include <string>

namespace hps_tf {

// The config the op should use for `config` (itself when nothing maps it).
std::string ResolveConfig(const std::string& config);

}  // namespace hps_tf

extern "C" {
// Maps config path `from` to `to` ("*" maps every path); `to` NULL or "" removes the mapping.
__attribute__((visibility("default"))) void hps_tf_map_config(const char* from, const char* to);
// What `config` resolves to now (mappings, then HPS_TF_CONFIG_MAP); the pointer stays valid on
// the calling thread until its next call.
__attribute__((visibility("default"))) const char* hps_tf_resolve_config(const char* config);
// Removes every mapping set by hps_tf_map_config.
__attribute__((visibility("default"))) void hps_tf_clear_config_map(void);
}

#endif  // HPS_TF_CONFIG_MAP_H_
