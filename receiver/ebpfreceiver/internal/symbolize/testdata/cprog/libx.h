#ifndef LIBX_H
#define LIBX_H
typedef void *(*libx_cb)(void);
void *libx_fn(libx_cb cb);
void libx_print(void);
#endif
