ciba_shared::http_function_main!(bc_authorize::handle, op_secret);
