# embed.cmake - writes the bytes of IN into OUT as a C array (cmake -DIN=... -DOUT=... -P embed.cmake).
# Defines `const char gw_openapi_doc[]` (NUL-terminated) and `const unsigned long gw_openapi_doc_len`.
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" nhex)
math(EXPR nbytes "${nhex} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" body "${body}")
file(WRITE ${OUT} "/* generated from rest_gateway/openapi.json by embed.cmake; do not edit */\n"
    "const char gw_openapi_doc[] = {\n${body}0x00};\n"
    "const unsigned long gw_openapi_doc_len = ${nbytes};\n")
