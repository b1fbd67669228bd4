// The op HpsLookup: keys of any rank -> float32 rows, keys.shape + [emb_vec_size].
// Its kernels are in lookup_kernel.cc; the Python wrapper is hps.tf.lookup.
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

REGISTER_OP("HpsLookup")
    .Input("keys: Tkeys")
    .Output("rows: float")
    .Attr("Tkeys: {int32, int64}")
    .Attr("ps_config: string")
    .Attr("model_name: string")
    .Attr("table_id: int >= 0")
    .Attr("emb_vec_size: int >= 1")
    // The rows come from outside the graph (the server may be updated between runs).
    .SetIsStateful()
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      int64_t dim = 0;
      TF_RETURN_IF_ERROR(c->GetAttr("emb_vec_size", &dim));
      tensorflow::shape_inference::ShapeHandle out;
      TF_RETURN_IF_ERROR(c->Concatenate(c->input(0), c->Vector(dim), &out));
      c->set_output(0, out);
      return absl::OkStatus();
    })
    .Doc(R"doc(
Rows of one table of an hps parameter server for `keys` (int32 or int64, any shape).

ps_config: an absolute config file path, or the config as JSON text.
model_name: a model of the config.
table_id: the table's index in the model.
emb_vec_size: floats per row; must equal the table's embedding_vecsize_per_table.
rows: float32, keys.shape + [emb_vec_size]; keys stored nowhere get the table's default row.
)doc");
