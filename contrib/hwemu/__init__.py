# hwemu: the hwcloud-emulator package (Huawei Cloud WAF/HSS/IAM export API emulator).
# Standard library only.  See contrib/EMULATOR.md.
