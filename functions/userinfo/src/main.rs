ciba_shared::http_function_main!(userinfo::handle, dpop);
